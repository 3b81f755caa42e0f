"""Input at the edge of what the key store holds: text longer than its columns, and numbers or
dates whose arithmetic would overflow, are refused with a precise reason and write nothing."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select

from kmc.audit.models import AuditEntry
from kmc.database import db
from tests.test_keyload_flow import SGC, api_headers
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
