"""The auditor's inspection report of one manufacturer (STS 600-10-1 §4.5) through the Flask
test client: its content, and that its digest is the one of the signed export it offers."""

from __future__ import annotations

import hashlib
import html
import io
import json
import re
import zipfile

from factories.callers import caller
from factories.keys import SGC, add_key, authorise
from factories.registry import new_device
from key_load import service as key_loading
from key_load_protocol import KeyIdentity
from tests.conftest import csrf_token, login
from tests.test_registry_cli import verify_export
from tests.test_registry_web import csr_file, kmc_certificates, upload

REPORT = "/registry/manufacturers/1A2B/inspection"


def _two_sms_one_key_load(app, client) -> None:
    device = new_device(app, "7001")
    add_key(app, 1)
    authorise(app, device.smid, 1)
    with app.app_context():
        key_loading.process_request(caller("operator1"), device.request((KeyIdentity(SGC, 1, 1),)))
    login(client, "maker1")
    upload(client, [csr_file("7002")])
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})


def _row(page: str, smid: str) -> str:
    return re.search(rf'<tr data-smid="{smid}">(.*?)</tr>', page, re.S).group(1)


def test_report_shows_each_sm_with_kind_certification_history_and_key_loads(app, client):
    _two_sms_one_key_load(app, client)
    login(client, "auditor1")
    page = client.get("/registry/manufacturers/1A2B").get_data(as_text=True)
    assert f'href="{REPORT}"' in page
    page = client.get(REPORT).get_data(as_text=True)
    assert "Inspection report: manufacturer 1A2B" in page and "2 SM(s)" in page
    loaded, pending = _row(page, "7001"), _row(page, "7002")
    assert "virtual" in loaded and "active" in loaded and "#1, 1 key(s)" in loaded
    assert "registered, pending" in loaded and "pending → active by admin1 (test device)" in loaded
    assert "certified" in pending and "SM-9000 · smfw 2.1.0 · C-42" in pending
    assert "pending" in pending and ">none<" in pending
    # The chart: an accessible SVG drawn on the server, its numbers in a table beside it.
    assert 'role="img" aria-labelledby="chart-title chart-desc"' in page
    assert "2 SM(s) allocated, 1 key load(s)" in page
    assert page.count('<polyline class="chart-') == 2
    assert re.search(r'<table class="table table-sm" id="inspection-days">.*?\(2\)', page, re.S)


def test_report_digest_is_the_sha256_of_its_signed_export_and_openssl_verifies_it(
    app, client, tmp_path
):
    _two_sms_one_key_load(app, client)
    login(client, "auditor1")
    page = client.get(REPORT).get_data(as_text=True)
    digest = re.search(r'id="inspection-sha256">([0-9a-f]{64})<', page).group(1)
    link = html.unescape(re.search(r'id="inspection-download" href="([^"]+)"', page).group(1))
    login(client, "maker1")  # a change after the report's time is not in its export
    upload(client, [csr_file("7003")])
    login(client, "auditor1")
    response = client.get(link)
    assert response.status_code == 200 and response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    name, signature = sorted(archive.namelist())
    assert signature == name + ".sig" and name in page
    content = archive.read(name)
    assert hashlib.sha256(content).hexdigest() == digest
    document = json.loads(content)
    assert [r["smid"] for r in document["security_modules"]] == ["7001", "7002"]
    assert document["filters"]["id_man"] == "1A2B"
    archive.extractall(tmp_path)
    root, signer = kmc_certificates(app, tmp_path)
    verified = verify_export(tmp_path / name, tmp_path / signature, root, signer)
    assert verified.returncode == 0, verified.stderr
    assert "openssl cms -verify -binary" in page and f"-content {name}" in page


def _download(client, page: str) -> tuple[str, bytes, bytes]:
    link = html.unescape(re.search(r'id="inspection-download" href="([^"]+)"', page).group(1))
    archive = zipfile.ZipFile(io.BytesIO(client.get(link).data))
    name, signature = sorted(archive.namelist())
    return name, archive.read(name), archive.read(signature)


def test_the_signed_export_holds_the_key_loads_the_report_shows(app, client, tmp_path):
    _two_sms_one_key_load(app, client)
    login(client, "auditor1")
    page = client.get(REPORT).get_data(as_text=True)
    name, content, signature = _download(client, page)
    with app.app_context():
        (issued,) = key_loading.loads_of(["7001"])
    loaded, pending = json.loads(content)["security_modules"]
    assert loaded["key_loads"] == [
        {
            "at": issued.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "sequence": 1,
            "keys": 1,
            "file_sha256": issued.file_sha256,
        }
    ]
    assert pending["key_loads"] == []
    assert f"{issued.at:%Y-%m-%d %H:%M} UTC" in _row(page, "7001") and "#1, 1 key(s)" in page
    (tmp_path / name).write_bytes(content)
    (tmp_path / f"{name}.sig").write_bytes(signature)
    root, signer = kmc_certificates(app, tmp_path)
    verified = verify_export(tmp_path / name, tmp_path / f"{name}.sig", root, signer)
    assert verified.returncode == 0, verified.stderr
    # The SM list's export keeps its records as they were, without key loads.
    archive = zipfile.ZipFile(io.BytesIO(client.get("/registry/export.json.zip").data))
    listed = json.loads(archive.read(min(archive.namelist())))
    assert {r["smid"] for r in listed["security_modules"]} == {"7001", "7002"}
    assert all("key_loads" not in r for r in listed["security_modules"])


def test_report_is_for_auditors_and_admins_and_a_bad_time_is_refused(app, client):
    new_device(app, "7001")
    login(client, "operator1")
    assert client.get(REPORT).status_code == 403
    login(client, "auditor1")
    refused = client.get(f"{REPORT}?as_of=yesterday", follow_redirects=True)
    assert refused.status_code == 400 and "20261201T191814.476727Z" in refused.get_data(
        as_text=True
    )
    future = client.get(f"{REPORT}.json.zip?as_of=29991231T000000.000000Z")
    assert future.status_code == 400
    assert client.get("/registry/manufacturers/FFFF/inspection").status_code == 404
