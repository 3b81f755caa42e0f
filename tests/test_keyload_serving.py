"""`kmc serve --workers N`: gunicorn worker processes answering key-load requests side by side."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from factories.keys import SGC, add_key, api_headers, authorise
from factories.registry import new_device
from key_load.models import KeyLoadIssue
from key_load_protocol import KeyIdentity
from kmc.audit import service as audit
from kmc.database import db
from tests.conftest import _free_port

pytestmark = pytest.mark.slow


@contextmanager
def _serving(instance, *options: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = _free_port()
    exe = Path(sys.executable).parent / "kmc"
    log_path = instance.folder.parent / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), *options],
            env=instance.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    connection.request("GET", "/login")
                    assert connection.getresponse().status == 200
                    connection.close()
                    break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "kmc serve did not start"
                    time.sleep(0.1)
            yield port, process
        finally:
            process.terminate()
            process.wait(timeout=20)


def _workers_of(pid: int, expected: int) -> list[str]:
    """The server's child processes, once `expected` of them run (workers fork one by one)."""
    deadline = time.monotonic() + 10
    while True:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if len(children) == expected or time.monotonic() > deadline:
            return children
        time.sleep(0.1)


def test_gunicorn_workers_issue_concurrent_eklfs_each_recorded_once(app, instance):
    devices = [new_device(app, f"40{n:02d}") for n in range(4)]
    add_key(app, 1)
    for device in devices:
        authorise(app, device.smid, 1)
    headers = {**api_headers(app), "Content-Type": "application/cms"}
    requests = [d.request((KeyIdentity(SGC, 1, 1),)) for d in devices for _ in range(3)]

    def post(port: int, der: bytes) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/api/v1/keyload", body=der, headers=headers)
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status, response.getheader("X-KMC-SMID") or ""

    with _serving(instance, "--workers", "3", "--threads", "2") as (port, process):
        assert len(_workers_of(process.pid, 3)) == 3
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda der: post(port, der), requests))
        replayed = post(port, requests[0])

    assert [status for status, _ in answers] == [200] * len(requests)
    assert replayed[0] == 409
    with app.app_context():
        issued = db.session.execute(select(KeyLoadIssue.smid, KeyLoadIssue.sequence)).all()
        assert sorted(issued) == sorted((d.smid, n) for d in devices for n in (1, 2, 3))
        assert audit.verify().ok


def test_one_worker_is_waitress_in_the_serving_process(instance):
    with _serving(instance, "--workers", "1") as (_port, process):
        assert _workers_of(process.pid, 0) == []


def test_workers_must_be_at_least_one(instance):
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kmc"), "serve", "--workers", "0"],
        env=instance.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--workers" in result.stderr
