"""The SM operator's page on the vending service: login with a service token, key registers,
limits, expiry warnings, recent tokens with the PAN masked, CSRF on every form, and the online
key-load button (here refused without a KMC; against a real KMC in test_sm_emulator_online)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

from werkzeug.test import Client

from factories.emulator import NOW, loaded_key
from factories.vending_service import SGC, loaded_state
from sm_emulator.api import VendingService
from sm_emulator.bearer import BearerTokens, add_token
from sm_emulator.page import mask_pan
from tests.test_vending_service import CREDIT, KEY

HTTPS = "https://localhost"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _page_client(tmp_path: Path, **service: object) -> tuple[Client, str, VendingService]:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, key_value=KEY, clm=Decimal("100")))
    tokens_file = tmp_path / "tokens"
    token = add_token(tokens_file, "desk")
    app = VendingService(state, clock=lambda: NOW, tokens=BearerTokens.read(tokens_file), **service)  # type: ignore[arg-type]
    return Client(app), token, app


def _csrf(client: Client, path: str) -> str:
    match = _CSRF.search(client.get(path, base_url=HTTPS).get_data(as_text=True))
    assert match, path
    return match.group(1)


def _log_in(client: Client, token: str) -> None:
    csrf = _csrf(client, "/page/login")
    done = client.post("/page/login", data={"csrf_token": csrf, "token": token}, base_url=HTTPS)
    assert (done.status_code, done.headers["Location"]) == (302, "/page/")


def test_the_page_needs_a_login_with_a_service_token(tmp_path: Path) -> None:
    client, token, _ = _page_client(tmp_path)
    first = client.get("/page/", base_url=HTTPS)
    assert (first.status_code, first.headers["Location"]) == (302, "/page/login")
    csrf = _csrf(client, "/page/login")
    wrong = client.post("/page/login", data={"csrf_token": csrf, "token": "x"}, base_url=HTTPS)
    assert "not one of this service" in wrong.get_data(as_text=True)
    assert client.post("/page/login", data={"token": token}, base_url=HTTPS).status_code == 400
    _log_in(client, token)
    assert client.get("/page/", base_url=HTTPS).status_code == 200
    cookie = client.get_cookie("sm_page", domain="localhost", path="/page/")
    assert cookie is not None and cookie.secure and cookie.http_only
    logout = client.post(
        "/page/logout", data={"csrf_token": _csrf(client, "/page/")}, base_url=HTTPS
    )
    assert logout.headers["Location"] == "/page/login"
    assert client.get("/page/", base_url=HTTPS).status_code == 302


def test_the_page_shows_registers_limits_warnings_and_recent_tokens_masked(
    tmp_path: Path,
) -> None:
    client, token, app = _page_client(tmp_path, ea07_tables=None)
    api = Client(app)
    headers = {"Authorization": f"Bearer {token}"}
    sold = api.post("/api/v1/tokens/credit", json={**CREDIT, "currency": "95"}, headers=headers)
    assert sold.status_code == 200, sold.get_json()
    _log_in(client, token)
    page = client.get("/page/", base_url=HTTPS).get_data(as_text=True)
    assert 'id="registers"' in page and "95 / 100" in page
    assert "credit_limit_near" in page
    assert mask_pan(CREDIT["pan"]) in page and CREDIT["pan"] not in page
    assert mask_pan("600727000000000009") == "600727********0009"
    assert KEY.hex() not in page.lower()


def test_the_key_load_button_needs_csrf_and_says_why_it_is_refused(tmp_path: Path) -> None:
    client, token, _ = _page_client(tmp_path)
    _log_in(client, token)
    page = client.get("/page/", base_url=HTTPS).get_data(as_text=True)
    assert 'id="keyload"' not in page and "--kmc URL" in page
    assert client.post("/page/keyload", data={}, base_url=HTTPS).status_code == 400
    csrf = _csrf(client, "/page/")
    refused = client.post("/page/keyload", data={"csrf_token": csrf}, base_url=HTTPS)
    assert "started without --kmc URL" in refused.get_data(as_text=True)


def test_without_a_tokens_file_the_page_admits_nobody(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm")
    client = Client(VendingService(state, clock=lambda: NOW))
    csrf = _csrf(client, "/page/login")
    answer = client.post("/page/login", data={"csrf_token": csrf, "token": "x"}, base_url=HTTPS)
    assert "admits nobody" in answer.get_data(as_text=True)
    assert client.get("/page/", base_url=HTTPS).status_code == 302
