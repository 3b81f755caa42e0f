"""The registry pages through the Flask test client: uploads, approvals, scoping, exports."""

from __future__ import annotations

import io
import zipfile

import pytest
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select

from factories.csr import make_csr
from kmc.database import db
from kmc.pki import current as current_pki
from sm_registry.models import Manufacturer, SecurityModule
from tests.conftest import csrf_token, login, post_form
from tests.test_registry_cli import verify_export
from tests.test_registry_csr import DATA

CERTIFIED = {"model": "SM-9000", "firmware": "smfw", "version": "2.1.0", "number": "C-42"}


def upload(client, files, kind="certified", **fields):
    data = {"kind": kind, "csrs": files, "csrf_token": csrf_token(client, "/registry/register")}
    data.update(CERTIFIED if kind == "certified" else {})
    data.update(fields)
    return client.post("/registry/register", data=data, content_type="multipart/form-data")


def csr_file(smid, ou="1A2B"):
    return (io.BytesIO(make_csr(smid, ou=ou)), f"{smid}.pem")


def kmc_certificates(app, folder):
    """The KMC root and audit-signer certificates, written as PEM files in `folder`."""
    root, signer = folder / "root.pem", folder / "audit.pem"
    with app.app_context():
        root.write_bytes(current_pki().root.certificate.public_bytes(serialization.Encoding.PEM))
        signer.write_bytes(
            current_pki().audit_signer.certificate.public_bytes(serialization.Encoding.PEM)
        )
    return root, signer


def test_manufacturer_uploads_several_csrs_and_sees_each_verdict(app, client):
    login(client, "maker1")
    files = [
        csr_file("1001"),
        csr_file("1002"),
        (io.BytesIO(b"junk"), "junk.pem"),
        csr_file("1003", "3C4D"),
    ]
    page = upload(client, files).get_data(as_text=True)
    assert "2 accepted, 2 refused." in page
    assert page.count("table-success") == 2 and page.count("table-danger") == 2
    assert "not a well-formed PKCS#10" in page and "OU names ID_man 3C4D" in page
    with app.app_context():
        assert sorted(db.session.scalars(select(SecurityModule.smid))) == ["1001", "1002"]


def test_upload_with_an_incomplete_certification_is_refused(app, client):
    login(client, "maker1")
    page = upload(client, [csr_file("1001")], version="").get_data(as_text=True)
    assert "certification version must be" in page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SecurityModule)) == 0


def test_upload_without_files_says_so(client):
    login(client, "maker1")
    assert "choose at least one CSR file" in upload(client, [], kind="virtual").get_data(
        as_text=True
    )


def test_virtual_sms_are_visibly_marked(client):
    login(client, "maker1")
    upload(client, [csr_file("1001")], kind="virtual")
    page = client.get("/registry/sms/1001").get_data(as_text=True)
    assert "virtual (test KMCs only)" in page


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_live_upload_page_refuses_virtual_sms(client):
    login(client, "maker1")
    page = upload(client, [csr_file("1001")], kind="virtual").get_data(as_text=True)
    assert "STS 600-10-1 §4.5: a live KMC never associates a public key with a virtual" in page
    assert 'id="results"' not in page


def test_admin_uploads_for_a_named_manufacturer(app, client):
    login(client, "admin1")
    page = upload(
        client, [(io.BytesIO((DATA / "sm-p384.csr.der").read_bytes()), "sm.der")], id_man="1a2b"
    )
    assert "1 accepted, 0 refused." in page.get_data(as_text=True)


def test_operator_approves_from_the_detail_page(client):
    login(client, "maker1")
    upload(client, [csr_file("1001")])
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    login(client, "operator1")
    response = post_form(
        client, "/registry/sms/1001/change", {"action": "approve", "reason": "bench-tested"},
        token_from="/registry/sms/1001",
    )  # fmt: skip
    assert response.status_code == 302
    page = client.get("/registry/sms/1001").get_data(as_text=True)
    assert 'id="sm-state">active' in page and "bench-tested" in page
    pem = client.get("/registry/sms/1001/certificate.pem")
    assert pem.status_code == 200 and pem.data.startswith(b"-----BEGIN CERTIFICATE-----")


def test_manufacturer_is_offered_only_revoke(client):
    login(client, "maker1")
    upload(client, [csr_file("1001")])
    page = client.get("/registry/sms/1001").get_data(as_text=True)
    assert '<option value="revoke">' in page and '<option value="approve">' not in page
    post_form(
        client, "/registry/sms/1001/change", {"action": "approve", "reason": "self"},
        token_from="/registry/sms/1001",
    )  # fmt: skip
    assert "may not approve" in client.get("/registry/sms/1001").get_data(as_text=True)


def test_manufacturer_cannot_read_list_export_or_change_anothers_sm(app, client):
    login(client, "maker2")
    upload(client, [csr_file("2002", "3C4D")])
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    login(client, "maker1")
    assert 'data-smid="2002"' not in client.get("/registry/").get_data(as_text=True)
    assert 'data-smid="2002"' not in client.get("/registry/?id_man=3C4D").get_data(as_text=True)
    assert client.get("/registry/sms/2002").status_code == 404
    post_form(
        client,
        "/registry/sms/2002/change",
        {"action": "revoke", "reason": "x"},
        token_from="/registry/",
    )
    with app.app_context():
        assert db.session.get(SecurityModule, "2002").state == "pending"
    exported = zipfile.ZipFile(io.BytesIO(client.get("/registry/export.json.zip").data))
    [name] = [n for n in exported.namelist() if n.endswith(".json")]
    assert b"2002" not in exported.read(name)


def test_auditor_filters_and_sees_history(client):
    login(client, "maker1")
    upload(client, [csr_file("1001"), csr_file("1002")])
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    login(client, "auditor1")
    page = client.get("/registry/?smid=1002").get_data(as_text=True)
    assert 'data-smid="1002"' in page and 'data-smid="1001"' not in page
    assert "by maker1" in page and "SM-9000" in page
    assert 'data-smid="1001"' not in client.get("/registry/?state=active").get_data(as_text=True)
    assert client.get("/registry/sms/1001").status_code == 200
    assert 'id="state-change"' not in client.get("/registry/sms/1001").get_data(as_text=True)


def test_auditor_export_zip_holds_a_file_openssl_verifies(app, client, tmp_path):
    login(client, "maker1")
    upload(client, [csr_file("1001")])
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    login(client, "auditor1")
    response = client.get("/registry/export.csv.zip?id_man=1A2B")
    assert response.status_code == 200 and response.mimetype == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    names = sorted(archive.namelist())
    assert len(names) == 2 and names[1] == names[0] + ".sig"
    assert names[0].startswith("sm-registry-test-") and names[0].endswith(".csv")
    archive.extractall(tmp_path)
    root, signer = kmc_certificates(app, tmp_path)
    verified = verify_export(tmp_path / names[0], tmp_path / names[1], root, signer)
    assert verified.returncode == 0, verified.stderr


def test_admin_creates_a_manufacturer_on_the_page(app, client):
    login(client, "admin1")
    response = post_form(
        client, "/registry/manufacturers", {"id_man": "beef", "name": "Beef", "contact": "x@y"},
        token_from="/registry/manufacturers",
    )  # fmt: skip
    assert response.status_code == 302
    assert "BEEF" in client.get("/registry/manufacturers").get_data(as_text=True)
    again = post_form(
        client, "/registry/manufacturers", {"id_man": "BEEF", "name": "Again"},
        token_from="/registry/manufacturers",
    )  # fmt: skip
    assert "manufacturer BEEF already exists" in again.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Manufacturer)) == 3


def test_navigation_shows_registry_pages_by_role(client):
    login(client, "maker1")
    nav = client.get("/home").get_data(as_text=True)
    assert "Register SMs" in nav and "Manufacturers" not in nav
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    login(client, "auditor1")
    nav = client.get("/home").get_data(as_text=True)
    assert "Security modules" in nav and "Register SMs" not in nav


def test_revoke_needs_the_smid_typed(app, client):
    login(client, "maker1")
    upload(client, [csr_file("1001")])
    change = {"action": "revoke", "reason": "lost"}
    post_form(client, "/registry/sms/1001/change", change, token_from="/registry/sms/1001")
    page = client.get("/registry/sms/1001").get_data(as_text=True)
    assert "is irreversible (it gets no further key loads): type its SMID" in page
    with app.app_context():
        assert db.session.get(SecurityModule, "1001").state == "pending"
    post_form(
        client, "/registry/sms/1001/change", {**change, "confirm": "1001"},
        token_from="/registry/sms/1001",
    )  # fmt: skip
    with app.app_context():
        assert db.session.get(SecurityModule, "1001").state == "revoked"
