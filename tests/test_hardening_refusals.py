"""Issue 13's input leftovers: a PEM with several CSRs, the key-load media types, the text rules
on the command line and on uploaded file names."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from sqlalchemy import func, select

from factories.csr import make_csr
from factories.keys import api_headers
from key_load.models import KeyLoadIssue
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.errors import InvalidInput
from sm_registry.csr import parse_request
from sm_registry.models import Manufacturer, SecurityModule
from tests.conftest import csrf_token, login

TWO_CSRS = make_csr("1001") + make_csr("1002")


def _sms(app) -> list[str]:
    with app.app_context():
        return sorted(db.session.scalars(select(SecurityModule.smid)))


def test_a_pem_with_two_csrs_is_refused():
    with pytest.raises(InvalidInput, match="the PEM holds 2 CSRs") as refused:
        parse_request(TWO_CSRS)
    assert refused.value.reason == "several_csrs"


def test_the_api_refuses_a_pem_with_two_csrs(app, client):
    response = client.post(
        "/api/v1/sms",
        json={"csr": TWO_CSRS.decode(), "kind": "virtual"},
        headers={k: v for k, v in api_headers(app, "maker1").items() if k != "Content-Type"},
    )
    assert (response.status_code, response.json["error"]) == (400, "several_csrs")
    assert _sms(app) == []


def test_the_page_refuses_a_pem_with_two_csrs(app, client):
    login(client, "maker1")
    page = client.post(
        "/registry/register",
        data={
            "kind": "virtual",
            "csrs": [(io.BytesIO(TWO_CSRS), "two.pem")],
            "csrf_token": csrf_token(client, "/registry/register"),
        },
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert "0 accepted, 1 refused." in page and "the PEM holds 2 CSRs" in page
    assert _sms(app) == []


def test_the_cli_refuses_a_pem_with_two_csrs(app, kmc, tmp_path):
    path = tmp_path / "two.pem"
    path.write_bytes(TWO_CSRS)
    result = kmc("sm", "register", "--csr", str(path), "--kind", "virtual", "--as", "maker1")
    assert result.exit_code == 1
    assert result.output.startswith("kmc: several_csrs: the PEM holds 2 CSRs")
    assert result.output.count("\n") == 1
    assert _sms(app) == []


@pytest.mark.parametrize(
    "media_type", ["application/json", "application/x-www-form-urlencoded", "text/plain", None]
)
def test_keyload_takes_only_the_cms_media_types(app, client, media_type):
    headers = api_headers(app)
    if media_type is None:
        headers.pop("Content-Type")
    else:
        headers["Content-Type"] = media_type
    response = client.post("/api/v1/keyload", data=b"\x30\x00", headers=headers)
    assert response.status_code == 415
    assert response.json["error"] == "unsupported_media_type"
    assert "application/cms" in response.json["message"]
    with app.app_context():
        entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
        assert db.session.scalar(select(func.count()).select_from(KeyLoadIssue)) == 0
    assert entry.action == "keyload.refuse"
    assert json.loads(entry.details)["reason"] == "unsupported_media_type"


@pytest.mark.parametrize(
    "media_type", ["application/cms", "application/pkcs7-mime", "application/octet-stream"]
)
def test_keyload_reads_a_body_of_each_cms_media_type(app, client, media_type):
    headers = {**api_headers(app), "Content-Type": media_type}
    response = client.post("/api/v1/keyload", data=b"\x30\x00", headers=headers)
    assert (response.status_code, response.json["error"]) == (400, "not_der")


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["manufacturer", "add", "--id-man", "9F9F", "--name", "Evil\u202eCorp"], "'--name'"),
        (
            ["manufacturer", "add", "--id-man", "9F9F", "--name", "A", "--contact", "x\x00"],
            "'--contact'",
        ),
        (["sgc", "add", "--sgc", "600999", "--name", "Group\x1b[31m"], "'--name'"),
        (["sgc", "add", "--sgc", "600999", "--name", "G", "--utility", "U\u200d"], "'--utility'"),
        (["user", "create", "--username", "eve\x00", "--role", "auditor"], "'--username'"),
        (["user", "token", "--username", "admin1", "--name", "t\x07"], "'--name'"),
        (["sm", "suspend", "1001", "--reason", "lost\x00"], "'--reason'"),
        (["key", "compromise", "--sgc", "600727", "--krn", "1", "--reason", "\x00"], "'--reason'"),
        (["approvals", "reject", "1", "--reason", "no\x00"], "'--reason'"),
        (["sgc", "add", "--sgc", "600999", "--name", "G", "--as", "admin1\x00"], "'--as'"),
    ],
)
def test_command_line_text_follows_the_text_rules(app, kmc, args, option):
    result = kmc(*args)
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"kmc: invalid_text: {option} contains ")
    assert result.output.count("\n") == 1
    with app.app_context():
        assert db.session.get(Manufacturer, "9F9F") is None


def _zip(tmp_path, members: dict[str, bytes]):
    archive = tmp_path / "csrs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return archive


def test_zip_member_names_follow_the_text_rules(app, kmc, tmp_path):
    archive = _zip(
        tmp_path,
        {
            "good.pem": make_csr("1001"),
            "gpj.\u202eexe.pem": make_csr("1002"),
            "bell\x07.pem": make_csr("1003"),
            "x" * 300 + ".pem": make_csr("1004"),
        },
    )
    result = kmc(
        "sm", "register-bulk", str(archive), "--kind", "virtual", "--as", "maker1", "--json"
    )  # fmt: skip
    verdicts = {item["name"]: item for item in json.loads(result.stdout)["items"]}
    assert verdicts["good.pem"]["result"] == "accepted"
    assert verdicts["gpj.\\u202eexe.pem"]["reason"] == "invalid_text"
    assert verdicts["bell\\x07.pem"]["reason"] == "invalid_text"
    assert verdicts["x" * 255]["reason"] == "too_long"
    assert _sms(app) == ["1001"]


def test_uploaded_file_names_follow_the_text_rules(app, client):
    login(client, "maker1")
    page = client.post(
        "/registry/register",
        data={
            "kind": "virtual",
            "csrs": [(io.BytesIO(make_csr("1001")), "a\u202efdp.pem")],
            "csrf_token": csrf_token(client, "/registry/register"),
        },
        content_type="multipart/form-data",
    ).get_data(as_text=True)
    assert "0 accepted, 1 refused." in page and "U+202E" in page and "\u202e" not in page
    assert _sms(app) == []
