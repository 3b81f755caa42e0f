"""The real `sm-emulator serve` (granian over TLS) in a subprocess: mutual TLS, bearer tokens,
concurrent clients, and a `kill -9` in the middle of a load that loses no decrement and never
repeats a TID."""

from __future__ import annotations

import http.client
import json
import os
import re
import resource
import signal
import sqlite3
import ssl
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from factories.emulator import PAN, loaded_key
from factories.tls import TlsCa
from factories.vending_service import SGC, HttpsClient, loaded_state, meter_on, start_service
from meter_emulator.meter import enter
from sm_emulator.bearer import add_token
from sm_emulator.cli import main as sm_emulator_main

pytestmark = pytest.mark.slow

KEY = bytes(range(20))
CREDIT = {
    "pan": PAN, "sgc": SGC, "krn": 1, "kt": 2, "ti": "01", "ea": "11",
    "subclass": "electricity", "amount": "12.5", "currency": "10",
}  # fmt: skip


def test_mutual_tls_admits_only_clients_of_the_client_ca(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, key_value=KEY))
    tls = TlsCa(tmp_path / "tls")
    clients = TlsCa(tmp_path / "clients", "Client CA")
    stranger = TlsCa(tmp_path / "stranger", "Another CA")
    service = start_service(state, tls, client_ca=clients.pem)
    try:
        till = clients.issue("till", server=False)
        with HttpsClient(service.port, tls.pem, client=till) as good:
            status, body = good.call("POST", "/api/v1/tokens/credit", CREDIT)
            assert status == 200, body
            meter = meter_on(loaded_key(SGC, key_value=KEY), PAN)
            assert enter(meter, body["tokens"][0]).kind == "credit"
            status, document = good.call("GET", "/api/v1/openapi.json")
            assert status == 200 and "/api/v1/tokens/credit" in document["paths"]
        for identity in (stranger.issue("intruder", server=False), None):
            with HttpsClient(service.port, tls.pem, client=identity) as client:
                with pytest.raises((ssl.SSLError, ConnectionError)):
                    client.call("POST", "/api/v1/tokens/credit", CREDIT)
    finally:
        service.stop()


def test_bearer_tokens_over_tls(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, key_value=KEY))
    tls = TlsCa(tmp_path / "tls")
    tokens_file = tmp_path / "tokens"
    token = add_token(tokens_file, "till-1")
    service = start_service(state, tls, tokens_file=tokens_file)
    try:
        with HttpsClient(service.port, tls.pem) as anonymous:
            status, body = anonymous.call("POST", "/api/v1/tokens/credit", CREDIT)
        assert (status, body["error"]) == (401, "unauthorised")
        with HttpsClient(service.port, tls.pem, token=token) as client:
            assert client.call("POST", "/api/v1/tokens/credit", CREDIT)[0] == 200
            # Chunked (no Content-Length): the server decodes it, the limit still holds.
            for chunks, status in ((["{", " " * 20000, "}"], 413), ([json.dumps(CREDIT)], 200)):
                client.connection.request(
                    "POST", "/api/v1/tokens/credit", body=(c.encode() for c in chunks),
                    headers=client.headers, encode_chunked=True,
                )  # fmt: skip
                response = client.connection.getresponse()
                answer = json.loads(response.read())
                assert response.status == status, answer
            assert len(answer["tokens"]) == 1  # the last request, the good one, was issued
    finally:
        service.stop()


def _tids_and_counters(state: Path) -> tuple[set[tuple[str, int]], Decimal, int]:
    db = sqlite3.connect(state / "state.db")
    try:
        tids = {(row[0], row[1]) for row in db.execute("SELECT pan, tid FROM issued_tid")}
        currency, tokens = db.execute(
            "SELECT currency_used, tokens_issued FROM key_register"
        ).fetchone()
    finally:
        db.close()
    return tids, Decimal(currency), tokens


def test_kill_9_mid_load_loses_no_decrement_and_never_repeats_a_tid(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, key_value=KEY, clm=Decimal("1000000")))
    tls = TlsCa(tmp_path / "tls")
    tokens_file = tmp_path / "tokens"
    token = add_token(tokens_file, "load")
    pans = ["600727000000000009", "600727000000000017"]
    service = start_service(state, tls, tokens_file=tokens_file)
    issued: list[tuple[str, int]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def load(pan: str) -> None:
        body = {**CREDIT, "pan": pan, "currency": "1"}
        with HttpsClient(service.port, tls.pem, token=token) as client:
            try:
                while True:
                    status, answer = client.call("POST", "/api/v1/tokens/credit", body)
                    assert status == 200, answer
                    with lock:
                        issued.append((pan, answer["tid"]))
                        if len(issued) >= 150:
                            enough.set()
            except (OSError, ValueError, http.client.HTTPException):
                return  # the server was killed under us

    threads = [threading.Thread(target=load, args=(pans[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    assert enough.wait(timeout=120)
    service.kill()
    for thread in threads:
        thread.join(timeout=60)
    returned = set(issued)
    assert len(returned) == len(issued), "a TID was returned twice for one meter"
    tids, currency, tokens = _tids_and_counters(state)
    assert returned <= tids, "a returned token's TID is not durable"
    assert currency >= len(issued) and currency == tokens == len(tids)

    again = start_service(state, tls, tokens_file=tokens_file)
    try:
        with HttpsClient(again.port, tls.pem, token=token) as client:
            after = {
                (
                    pan,
                    client.call("POST", "/api/v1/tokens/credit", {**CREDIT, "pan": pan})[1]["tid"],
                )
                for pan in pans
            }
    finally:
        again.stop()
    assert not after & tids


def test_a_worker_killed_mid_load_is_replaced_and_loses_nothing(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, key_value=KEY, clm=Decimal("1000000")))
    tls = TlsCa(tmp_path / "tls")
    tokens_file = tmp_path / "tokens"
    token = add_token(tokens_file, "load")
    service = start_service(state, tls, tokens_file=tokens_file)
    issued: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(pan: str) -> None:
        body = {**CREDIT, "pan": pan, "currency": "1"}
        while not stop.is_set():
            with HttpsClient(service.port, tls.pem, token=token) as client:
                try:
                    while not stop.is_set():
                        status, answer = client.call("POST", "/api/v1/tokens/credit", body)
                        assert status == 200, answer
                        with lock:
                            issued.append((pan, answer["tid"]))
                except (OSError, ValueError, http.client.HTTPException):
                    pass  # this connection's worker was killed: connect again

    try:
        before = service.workers()
        assert len(before) == 2
        threads = [
            threading.Thread(target=load, args=(f"60072700000000{n:03d}{d}",))
            for n, d in ((0, 9), (1, 7), (2, 5), (3, 3))
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(issued) < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(min(before), signal.SIGKILL)
        while service.workers() in (before, before - {min(before)}):
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        replaced_at = len(issued)
        while len(issued) < replaced_at + 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert service.process.poll() is None, "the service ended with its worker"
        assert len(service.workers() - before) == 1 and len(service.workers()) == 2
        assert len(issued) >= replaced_at + 100, "the service stopped vending"
    finally:
        service.stop()
    returned = set(issued)
    assert len(returned) == len(issued), "a TID was returned twice for one meter"
    tids, currency, tokens = _tids_and_counters(state)
    assert returned <= tids, "a returned token's TID is not durable"
    assert currency == tokens == len(tids)


def test_a_state_that_cannot_be_written_is_a_503_that_changes_nothing(tmp_path: Path) -> None:
    """A real write fault: the workers may not grow a file (RLIMIT_FSIZE), so SQLite's commit
    fails with a disk I/O error, as on a full disk; lifted, the same service vends again."""
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, key_value=KEY, clm=Decimal("1000")))
    tls = TlsCa(tmp_path / "tls")
    tokens_file = tmp_path / "tokens"
    token = add_token(tokens_file, "till")
    service = start_service(state, tls, tokens_file=tokens_file)
    try:
        with HttpsClient(service.port, tls.pem, token=token) as client:
            assert client.call("POST", "/api/v1/tokens/credit", CREDIT)[0] == 200
            before = _tids_and_counters(state)
            limit = (state / "state.db-wal").stat().st_size
            for pid in service.workers():
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
            for _ in range(4):  # both workers, whichever answers
                with HttpsClient(service.port, tls.pem, token=token) as fresh:
                    status, answer = fresh.call("POST", "/api/v1/tokens/credit", CREDIT)
                assert (status, answer["error"]) == (503, "state_unavailable"), answer
                assert "disk I/O error" in answer["message"] and "tokens" not in answer
            assert _tids_and_counters(state) == before
            for pid in service.workers():
                resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
            status, answer = client.call("POST", "/api/v1/tokens/credit", CREDIT)
            assert status == 200, answer
        tids, currency, tokens = _tids_and_counters(state)
        assert (len(tids), currency, tokens) == (2, 2 * Decimal(CREDIT["currency"]), 2)
        log = next(tmp_path.glob("serve-*.log")).read_text()
        assert "Traceback" not in log
        assert re.search(
            r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ERROR sm_emulator\.api\[\d+\]: "
            r"state_unavailable: disk I/O error$",
            log,
            re.MULTILINE,
        ), log
    finally:
        service.stop()


def test_a_tls_key_granian_cannot_read_is_refused_in_one_line(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, key_value=KEY))
    server = TlsCa(tmp_path / "tls").issue("server", server=True)
    key = serialization.load_pem_private_key(server.key.read_bytes(), None)
    traditional = tmp_path / "ec.pem"  # 'BEGIN EC PRIVATE KEY', as `openssl ecparam -genkey` writes
    traditional.write_bytes(
        key.private_bytes(  # type: ignore[union-attr]  # an EC key
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    tokens_file = tmp_path / "tokens"
    add_token(tokens_file, "till-1")
    result = CliRunner().invoke(
        sm_emulator_main,
        ["serve", "--state", str(state), "--tls-cert", str(server.cert),
         "--tls-key", str(traditional), "--tokens-file", str(tokens_file)],
    )  # fmt: skip
    assert result.exit_code != 0
    [line] = result.output.splitlines()
    assert line.startswith("sm-emulator: tls_key_format: ") and "openssl pkcs8 -topk8" in line
