"""`kmc serve --workers N`: gunicorn worker processes answering key-load requests side by side."""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import select

from factories.keys import SGC, add_key, api_headers, authorise
from factories.registry import new_device
from key_load.models import KeyLoadIssue
from key_load_protocol import KeyIdentity
from key_load_protocol.eklf import open_eklf
from kmc import pki
from kmc.audit import service as audit
from kmc.database import db
from tests.conftest import REDIS_URL, kmc_server, require, run_kmc

pytestmark = pytest.mark.slow


def _serving(instance, *options: str):
    return kmc_server(instance.env(), instance.folder.parent / "serve.log", *options)


def _workers_of(pid: int, expected: int) -> list[str]:
    """The server's child processes, once `expected` of them run (workers fork one by one)."""
    deadline = time.monotonic() + 10
    while True:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) == expected or time.monotonic() > deadline:
            return children
        time.sleep(0.1)


# With pkcs11 each worker opens its own session on the token after the fork and signs there.
@pytest.mark.parametrize("keystore", ["software", "pkcs11"])
def test_gunicorn_workers_issue_concurrent_eklfs_each_recorded_once(app, instance, tmp_path):
    devices = [new_device(app, f"40{n:02d}") for n in range(4)]
    add_key(app, 1)
    for device in devices:
        authorise(app, device.smid, 1)
    headers = {**api_headers(app), "Content-Type": "application/cms"}
    requests = [d.request((KeyIdentity(SGC, 1, 1),)) for d in devices for _ in range(3)]

    def post(port: int, der: bytes) -> tuple[int, str, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/api/v1/keyload", body=der, headers=headers)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        return response.status, response.getheader("X-KMC-SMID") or "", body

    access_log = tmp_path / "access.log"
    options = ("--workers", "3", "--threads", "2", "--access-log", str(access_log))
    with _serving(instance, *options) as (port, process):
        workers = _workers_of(process.pid, 3)
        assert len(workers) == 3
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda der: post(port, der), requests))
        replayed = post(port, requests[0])

    answered_by = {
        line.rsplit("pid=", 1)[1].strip("<>")
        for line in access_log.read_text().splitlines()
        if '"POST /api/v1/keyload' in line
    }
    assert len(answered_by) >= 2 and answered_by <= set(workers), answered_by

    assert [status for status, _, _ in answers] == [200] * len(requests)
    assert replayed[0] == 409
    by_smid = {d.smid: d for d in devices}
    with app.app_context():
        root = pki.current().root.certificate
    for _, smid, eklf in answers:  # every worker signed on the token (pkcs11) or in process
        loaded = open_eklf(eklf, trusted_root=root, sm_private_key=by_smid[smid].key)
        assert [k.identity for k in loaded.keys] == [KeyIdentity(SGC, 1, 1)]
    with app.app_context():
        issued = db.session.execute(select(KeyLoadIssue.smid, KeyLoadIssue.sequence)).all()
        assert sorted(issued) == sorted((d.smid, n) for d in devices for n in (1, 2, 3))
        assert audit.verify().ok


def _flushed_redis() -> str:
    """The tests' Redis database, emptied (required under CI, as PostgreSQL is)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=5).flushdb()
    except redis.RedisError as error:
        require(False, f"Redis at {REDIS_URL} is not answering: {error}")
    return REDIS_URL


def test_the_workers_share_the_online_rate_limit_through_redis(app, instance, tmp_path):
    """Each of several workers counts its own requests with `memory://`; with Redis the per-SM
    limit holds across them (this test fails with `memory://`: up to twice the limit passes)."""
    device = new_device(app, "4101")
    add_key(app, 1)
    authorise(app, device.smid, 1)
    env = instance.env(
        KMC_RATELIMIT_STORAGE_URI=_flushed_redis(), KMC_SM_KEYLOAD_LIMIT_PER_SM="4/minute"
    )
    access_log = tmp_path / "access.log"
    options = ("--workers", "2", "--access-log", str(access_log))
    with kmc_server(env, tmp_path / "serve.log", *options) as (port, process):
        assert len(_workers_of(process.pid, 2)) == 2
        answers = []
        for _ in range(12):  # a new connection each: the workers take turns accepting
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request(
                "POST", "/api/v1/sm/keyload", body=device.request(),
                headers={"Content-Type": "application/cms"},
            )  # fmt: skip
            response = connection.getresponse()
            response.read()
            connection.close()
            answers.append(response.status)
    answered_by = {
        line.rsplit("pid=", 1)[1].strip("<>")
        for line in access_log.read_text().splitlines()
        if '"POST /api/v1/sm/keyload' in line
    }
    assert len(answered_by) == 2, "one worker answered everything: nothing shared was shown"
    assert answers == [200] * 4 + [429] * 8
    with app.app_context():
        assert db.session.query(KeyLoadIssue).count() == 4


def test_one_worker_is_waitress_in_the_serving_process(instance):
    with _serving(instance, "--workers", "1") as (_port, process):
        assert _workers_of(process.pid, 0) == []


def test_an_access_log_needs_gunicorn(instance):
    result = run_kmc(instance, "serve", "--access-log", "-")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "kmc: usage: --access-log needs --workers 2 or more (gunicorn)"
    ]


def test_workers_must_be_at_least_one(instance):
    result = run_kmc(instance, "serve", "--workers", "0")
    assert result.returncode != 0
    assert "--workers" in result.stderr
