"""The key-store and key-load pages through the Flask test client (forms with CSRF tokens)."""

from __future__ import annotations

import io
import re

from sqlalchemy import func, select

from factories.keys import SGC, add_key, authorise
from factories.registry import new_device
from key_load.models import KeyLoadIssue
from key_load_protocol import KeyIdentity, open_eklf
from kmc import pki
from kmc.database import db
from tests.conftest import csrf_token, login, split_and_unseal
from vending_keys.models import VendingKey


def _post(client, path, data, form_page, prefix=""):
    token = csrf_token(client, form_page)
    return client.post(path, data={**data, f"{prefix}csrf_token": token}, follow_redirects=True)


def test_operator_adds_a_group_and_generates_a_key_seeing_only_the_kcv(app, client):
    login(client, "operator1")
    page = _post(
        client,
        "/keys/supply-groups",
        {"group-sgc": SGC, "group-name": "North", "group-utility": "City Power"},
        "/keys/",
        "group-",
    ).get_data(as_text=True)
    assert "Supply group 600727 added." in page
    page = _post(
        client,
        "/keys/generate",
        {
            "key-sgc": SGC,
            "key-krn": "1",
            "key-kt": "1",
            "key-dkga": "04",
            "key-eas": ["07", "11"],
            "key-base_date": "2014",
            "key-ken": "255",
        },
        "/keys/",
        "key-",
    ).get_data(as_text=True)
    with app.app_context():
        stored = db.session.scalars(select(VendingKey)).one()
        assert f"KCV {stored.kcv}" in page
        from vending_keys.service import open_key

        assert open_key(stored).hex() not in page.lower()
        assert open_key(stored).hex().upper() not in page


def test_generate_form_refuses_ea11_with_dkga02(app, client):
    add_key(app, 1)
    login(client, "operator1")
    page = _post(
        client,
        "/keys/generate",
        {
            "key-sgc": SGC, "key-krn": "2", "key-kt": "1", "key-dkga": "02",
            "key-eas": ["11"], "key-base_date": "2014", "key-ken": "1",
        },
        "/keys/",
        "key-",
    ).get_data(as_text=True)  # fmt: skip
    assert "EA 11 needs DKGA 04" in page


def test_upload_issues_an_eklf_and_offers_it_for_download(app, client):
    device = new_device(app, "1001")
    add_key(app, 1)
    authorise(app, device.smid, 1)
    login(client, "operator1")
    token = csrf_token(client, "/keyload/")
    response = client.post(
        "/keyload/process",
        data={
            "csrf_token": token,
            "request_file": (io.BytesIO(device.request((KeyIdentity(SGC, 1, 1),))), "r.der"),
        },
        content_type="multipart/form-data",
    )
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "EKLF #1 issued to SM 1001 with 1 key(s)." in page
    link = re.search(r'href="(/keyload/issues/\d+/eklf)"', page).group(1)
    download = client.get(link)
    assert download.mimetype == "application/cms"
    with app.app_context():
        root = pki.current().root.certificate
    klf = open_eklf(download.data, trusted_root=root, sm_private_key=device.key)
    assert [k.identity for k in klf.keys] == [KeyIdentity(SGC, 1, 1)]


def test_upload_of_garbage_is_refused_with_the_reason_and_issues_nothing(app, client):
    login(client, "operator1")
    token = csrf_token(client, "/keyload/")
    response = client.post(
        "/keyload/process",
        data={"csrf_token": token, "request_file": (io.BytesIO(b"nonsense"), "r.der")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "the VKLOADREQ is refused" in page and "Request refused (not_der)" not in page
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(KeyLoadIssue)) == 0


def test_auditor_sees_keys_and_issues_but_no_forms(app, client):
    add_key(app, 1)
    login(client, "auditor1")
    keys_page = client.get("/keys/").get_data(as_text=True)
    assert "600727" in keys_page and "generate-form" not in keys_page
    assert "upload-form" not in client.get("/keyload/").get_data(as_text=True)


def test_expiry_page_lists_warnings(app, client):
    device = new_device(app, "1001")
    add_key(app, 1)
    authorise(app, device.smid, 1)
    login(client, "operator1")
    page = client.get("/keys/expiring?within=400").get_data(as_text=True)
    assert "key EXP" in page and "SM IUT" in page and "1001" in page
    assert "Nothing expires within 1 days" in client.get("/keys/expiring?within=1").get_data(
        as_text=True
    )


def test_live_mode_approval_through_the_pages(app, client):
    app.config["KMC_MODE"] = "live"
    split_and_unseal(app)
    add_key_page = {"group-sgc": SGC, "group-name": "North"}
    login(client, "operator1")
    _post(client, "/keys/supply-groups", add_key_page, "/keys/", "group-")
    page = _post(
        client,
        "/keys/generate",
        {
            "key-sgc": SGC, "key-krn": "1", "key-kt": "3", "key-dkga": "04",
            "key-eas": ["07"], "key-base_date": "2014", "key-ken": "255",
        },
        "/keys/",
        "key-",
    ).get_data(as_text=True)  # fmt: skip
    assert "another user must approve it" in page
    assert "approve-1" not in client.get("/keys/approvals").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/home")})
    login(client, "operator2")
    assert 'id="approve-1"' in client.get("/keys/approvals").get_data(as_text=True)
    page = _post(client, "/keys/approvals/1/approve", {}, "/keys/approvals").get_data(as_text=True)
    assert "Generated SGC 600727 KRN 1 KT 3" in page
