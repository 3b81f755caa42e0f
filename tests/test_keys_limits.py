"""Input at the edge of what the key store holds: text longer than its columns, and numbers or
dates whose arithmetic would overflow, are refused with a precise reason and write nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from factories.keys import SGC, api_headers
from kmc.audit.models import AuditEntry
from kmc.database import db
from tests.test_keys_store import GENERATE_ARGS, _ok, _refused
from vending_keys.models import Approval, SupplyGroup, VendingKey

KEY = ("--sgc", SGC, "--krn", "1", "--kt", "1")


@pytest.fixture
def headers(app):
    return {"Authorization": api_headers(app)["Authorization"]}


@pytest.fixture
def key(kmc):
    _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North"))
    _ok(kmc(*GENERATE_ARGS))


def _count(app, model):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def _audit_actions(app):
    with app.app_context():
        return db.session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)).all()


@pytest.mark.parametrize("field", ["name", "utility", "cluster"])
def test_over_long_supply_group_text_is_refused_by_the_cli(app, kmc, field):
    args = {"name": "North", "utility": "", "cluster": "", field: "x" * 121}
    before = _audit_actions(app)
    line = _refused(
        kmc("sgc", "add", "--sgc", SGC, *(f"--{k}={v}" for k, v in args.items())),
        "at most 120 characters",
    )
    assert field in line
    assert _count(app, SupplyGroup) == 0 and _audit_actions(app) == before


@pytest.mark.parametrize("field", ["name", "utility", "cluster"])
def test_over_long_supply_group_text_is_refused_by_the_api(app, client, headers, field):
    body = {"sgc": SGC, "name": "North", field: "x" * 121}
    answer = client.post("/api/v1/supply-groups", json=body, headers=headers)
    assert (answer.status_code, answer.get_json()["error"]) == (400, f"invalid_{field}")
    assert _count(app, SupplyGroup) == 0


def test_supply_group_text_of_exactly_the_column_width_is_kept(app, kmc):
    _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "n" * 120, "--utility", "u" * 120,
            "--cluster", "c" * 120))  # fmt: skip
    (group,) = json.loads(_ok(kmc("sgc", "list", "--json")).output)
    assert (group["name"], group["utility"], group["cluster"]) == ("n" * 120, "u" * 120, "c" * 120)


@pytest.mark.parametrize("change", ["deactivate", "compromise"])
def test_over_long_state_reason_is_refused(app, kmc, client, headers, key, change):
    _refused(kmc("key", change, *KEY, "--reason", "r" * 501), "at most 500 characters")
    answer = client.post(
        f"/api/v1/keys/{SGC}/1/1/{change}", json={"reason": "r" * 501}, headers=headers
    )
    assert (answer.status_code, answer.get_json()["error"]) == (400, "reason_too_long")
    with app.app_context():
        assert db.session.scalars(select(VendingKey.state)).one() == "active"
    _ok(kmc("key", change, *KEY, "--reason", "r" * 500))


class TestLiveMode:
    @pytest.fixture
    def kmc_mode(self):
        return "live"

    def test_over_long_rejection_reason_is_refused(self, app, kmc):
        _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North", "--as", "operator1"))
        proposal = json.loads(_ok(kmc(*GENERATE_ARGS, "--as", "operator1", "--json")).output)
        approval_id = str(proposal["approval"]["id"])
        reject = ("approvals", "reject", approval_id, "--as", "admin1", "--reason")
        _refused(kmc(*reject, "r" * 501), "at most 500 characters")
        with app.app_context():
            assert db.session.get(Approval, int(approval_id)).state == "pending"
        _ok(kmc(*reject, "r" * 500))


@pytest.mark.parametrize("within", ["36501", "999999999", "99999999999", "-1"])
def test_expiry_window_beyond_a_century_is_refused(client, kmc, headers, within):
    _refused(kmc("keys", "expiring", "--within", within), "0 to 36500 days")
    answer = client.get(f"/api/v1/keys/expiring?within={within}", headers=headers)
    assert (answer.status_code, answer.get_json()["error"]) == (400, "invalid_within")


def test_expiry_window_of_a_century_is_answered(client, kmc, headers, key):
    rows = json.loads(_ok(kmc("keys", "expiring", "--within", "36500", "--json")).output)
    assert [r["what"] for r in rows] == ["exp"]
    answer = client.get("/api/v1/keys/expiring?within=36500", headers=headers)
    assert [w["what"] for w in answer.get_json()["expiring"]] == ["exp"]


API_KEY = {"sgc": SGC, "krn": 1, "kt": 1, "dkga": "04", "eas": ["07"], "base_date": 2014, "ken": 1}


@pytest.mark.parametrize(
    "times",
    [
        {"act": "9999-06-01T00:00:00+00:00"},  # the default EXP, ACT + 10 years, is past 9999
        {"exp": "9999-12-31T23:00:00-05:00"},  # in UTC that is past 9999
        {"act": "0001-01-01T00:30:00+01:00"},  # in UTC that is before year 1
        {"act": "9999-01-01T00:00:00+00:00", "exp": "9999-12-01T00:00:00+00:00", "refresh": 3650},
    ],
)
def test_dates_whose_arithmetic_overflows_are_refused(app, kmc, client, headers, times):
    _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North"))
    args = [f"--{name.replace('refresh', 'refresh-days')}={v}" for name, v in times.items()]
    line = _refused(kmc(*GENERATE_ARGS, *args), "")
    assert "internal error" not in line
    body = {**API_KEY, **{k.replace("refresh", "refresh_days"): v for k, v in times.items()}}
    answer = client.post("/api/v1/keys", json=body, headers=headers)
    assert answer.status_code == 400
    assert answer.get_json()["error"] in {"invalid_time", "invalid_refresh"}
    assert _count(app, VendingKey) == 0


def test_a_key_generated_from_the_page_with_act_near_year_9999_is_refused(app, client):
    from tests.conftest import login, post_form

    login(client, "operator1")
    post_form(client, "/keys/supply-groups", {"group-sgc": SGC, "group-name": "North"}, "/keys/")
    form = {"key-sgc": SGC, "key-krn": "1", "key-kt": "1", "key-dkga": "04", "key-eas": "07",
            "key-base-date": "2014", "key-ken": "1", "key-act": "9999-06-01"}  # fmt: skip
    answer = post_form(client, "/keys/generate", form, "/keys/")
    assert answer.status_code == 200  # the form again, with the refusal
    assert "past year 9999" in answer.get_data(as_text=True)
    assert _count(app, VendingKey) == 0
