"""`sm-emulator keyload --kmc URL`: request, receive and load in one step against a real KMC
served over HTTP, including an answer lost on the way (recovered by fetching the same EKLF)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from flask import Flask
from werkzeug.serving import make_server
from werkzeug.test import Client

from factories.keys import SGC, add_key, authorise
from factories.registry import ADMIN, ID_MAN
from kmc import pki
from sm_emulator.api import VendingService
from sm_emulator.bearer import BearerTokens, add_token
from sm_emulator.cli import main
from sm_emulator.clock import system_now
from sm_emulator.module import SecurityModule
from sm_emulator.online import Kmc
from sm_registry import service as registry
from tests.test_keyload_flow import issue_count, last_audit

SMID = "2001"


@dataclass
class Dropper:
    """WSGI middleware: lets the KMC answer, then drops the connection before the answer goes
    out, for the next `drops` requests to paths starting with `prefix`."""

    app: Callable[..., Any]
    prefix: str = "/api/v1/sm/keyload"
    drops: int = 0
    seen: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"]))
        if self.drops and environ["PATH_INFO"].startswith(self.prefix):
            self.drops -= 1
            answered = self.app(environ, lambda *args: None)
            b"".join(answered)  # the KMC has issued and committed
            environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            raise ConnectionAbortedError("answer dropped on purpose")
        return self.app(environ, start_response)


@pytest.fixture
def served(app: Flask) -> Iterator[tuple[str, Dropper]]:
    dropper = Dropper(app.wsgi_app)
    app.wsgi_app = dropper  # type: ignore[method-assign]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.port}", dropper
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def state(app: Flask, tmp_path: Path) -> Path:
    """An SM emulator registered, approved and certified by the test KMC, authorised for
    keys KRN 1 and 2; registered in a test KMC, so it may load online."""
    folder = tmp_path / "sm"
    sm, csr = SecurityModule.initialise(folder, smid=SMID, id_man=ID_MAN)
    with app.app_context():
        registry.register(ADMIN, csr, "virtual", None, as_manufacturer=ID_MAN)
        registry.change_state(ADMIN, SMID, "approve", "online test")
        chain = registry.certificate_chain(SMID).pem()
        root = pki.current().root.certificate.public_bytes(serialization.Encoding.PEM)
    sm.trust(root)
    sm.install_certificate(chain)
    sm.close()
    for krn in (1, 2):
        add_key(app, krn)
        authorise(app, SMID, krn)
    return folder


def _keyload(state: Path, url: str, *extra: str) -> Any:
    return CliRunner().invoke(
        main, ["keyload", "--state", str(state), "--kmc", url, "--json", *extra]
    )


def _registers(state: Path) -> list[int]:
    sm = SecurityModule(state)
    try:
        return [r.identity.krn for r in sm.registers()]
    finally:
        sm.close()


def test_keyload_requests_receives_and_loads_in_one_step(app, served, state):
    url, _ = served
    result = _keyload(state, url)
    assert result.exit_code == 0, result.output
    loaded = json.loads(result.output)
    assert loaded["sequence"] == 1 and [k["krn"] for k in loaded["keys"]] == [1, 2]
    assert _registers(state) == [1, 2]
    assert issue_count(app) == 1
    assert last_audit(app).actor == f"sm:{SMID}"


def test_a_lost_answer_is_fetched_again_and_never_issued_twice(app, served, state):
    url, dropper = served
    dropper.drops = 1
    result = _keyload(state, url, "--key", f"{SGC}:2:1")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["sequence"] == 1
    assert _registers(state) == [2]
    assert issue_count(app) == 1
    assert dropper.seen == [
        ("POST", "/api/v1/sm/keyload"),  # issued, answer dropped
        ("POST", "/api/v1/sm/keyload"),  # refused as a replay, naming sequence 1
        ("GET", "/api/v1/sm/keyload/issues/1"),  # the same EKLF
    ]
    assert last_audit(app).action == "keyload.fetch"


def test_a_refusal_is_one_line_and_loads_nothing(app, served, state):
    url, _ = served
    with app.app_context():
        registry.set_online_keyload(ADMIN, SMID, False, "by hand only")
    result = CliRunner().invoke(main, ["keyload", "--state", str(state), "--kmc", url])
    assert result.exit_code == 1
    assert result.output.startswith("sm-emulator: online_keyload_disabled: the KMC refused:")
    assert len(result.output.strip().splitlines()) == 1
    assert _registers(state) == [] and issue_count(app) == 0


def test_an_unreachable_kmc_is_one_line(state):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = CliRunner().invoke(
        main, ["keyload", "--state", str(state), "--kmc", f"http://127.0.0.1:{port}"]
    )
    assert result.exit_code == 1
    assert result.output.startswith("sm-emulator: kmc_unreachable:")
    bad = CliRunner().invoke(main, ["keyload", "--state", str(state), "--kmc", "ftp://x"])
    assert bad.exit_code == 1 and bad.output.startswith("sm-emulator: invalid_kmc_url:")


def _service_post(service: VendingService, body: dict[str, Any]) -> tuple[int, Any]:
    response = Client(service).post(
        "/api/v1/keyload", data=json.dumps(body), content_type="application/json"
    )
    return response.status_code, response.get_json()


def test_the_vending_service_loads_keys_online(app, served, state):
    url, _ = served
    service = VendingService(state, clock=system_now, kmc=Kmc(url))
    status, loaded = _service_post(service, {"keys": [f"{SGC}:1:1"]})
    assert status == 200, loaded
    assert loaded["sequence"] == 1 and [k["krn"] for k in loaded["keys"]] == [1]
    # A key the KMC does not authorise: the KMC's refusal, with its reason, nothing loaded.
    add_key(app, 3)
    status, refused = _service_post(service, {"keys": [f"{SGC}:3:1"]})
    assert (status, refused["error"]) == (422, "key_not_authorised")
    assert _registers(state) == [1]
    assert _service_post(service, {"keys": ["bad"]})[1]["error"] == "invalid_key"
    assert _service_post(service, {"keys": []})[1]["error"] == "invalid_request"
    document = Client(service).get("/api/v1/openapi.json").get_json()
    assert set(document["paths"]["/api/v1/keyload"]["post"]["responses"]) >= {"200", "422", "502"}


def test_the_vending_service_refuses_online_loading_without_a_kmc_or_a_reachable_one(state):
    status, refused = _service_post(VendingService(state, clock=system_now), {})
    assert (status, refused["error"]) == (422, "no_kmc")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = VendingService(state, clock=system_now, kmc=Kmc(f"http://127.0.0.1:{port}"))
    status, refused = _service_post(unreachable, {})
    assert (status, refused["error"]) == (502, "kmc_unreachable")
    assert _registers(state) == []


def test_the_page_button_loads_keys_online(app, served, state, tmp_path):
    from tests.test_sm_page import HTTPS, _csrf, _log_in

    url, _ = served
    tokens_file = tmp_path / "tokens"
    token = add_token(tokens_file, "desk")
    service = VendingService(
        state, clock=system_now, tokens=BearerTokens.read(tokens_file), kmc=Kmc(url)
    )
    client = Client(service)
    _log_in(client, token)
    csrf = _csrf(client, "/page/")
    done = client.post("/page/keyload", data={"csrf_token": csrf}, base_url=HTTPS)
    text = done.get_data(as_text=True)
    assert "Loaded EKLF #1" in text
    assert _registers(state) == [1, 2] and issue_count(app) == 1
