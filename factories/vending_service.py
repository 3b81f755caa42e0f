"""The SM vending service for tests and benchmarks: a loaded state folder, the real
`sm-emulator serve` in a subprocess over TLS, and a small HTTPS JSON client (stdlib only)."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factories.emulator import NOW, MiniKmc, loaded_key, ready_sm
from factories.tls import TlsCa, TlsFiles
from key_load_protocol import LoadedKey
from meter_emulator.meter import MeterState, manufactured
from sts_token import KeyParameters, Pan, VendingKey, derive_decoder_key

SGC = "600100"
FAKE_NOW = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def loaded_state(folder: Path, *keys: LoadedKey) -> Path:
    """An SM state folder holding `keys` (default: SGC 600100 KRN 1 KT 2, DKGA04 EA11)."""
    kmc = MiniKmc()
    sm = ready_sm(folder, kmc)
    sm.load(kmc.answer(sm.request(None), keys or (loaded_key(SGC),)))
    sm.close()
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningService:
    process: subprocess.Popen[bytes]
    port: int
    server: TlsFiles

    def stop(self) -> None:
        """Terminate gracefully; a master still draining busy workers after 30 s is killed."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def workers(self) -> set[int]:
        """The PIDs of the master's worker processes, as they are now (as
        `tests/test_keyload_serving.py` reads gunicorn's: the children of its main thread)."""
        pid = self.process.pid
        return {
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        }

    def kill(self) -> None:
        """SIGKILL the master and its workers (the workers are in its process group)."""
        os.killpg(self.process.pid, 9)
        self.process.wait(timeout=30)


def start_service(
    state: Path,
    tls: TlsCa,
    *,
    client_ca: Path | None = None,
    tokens_file: Path | None = None,
    workers: int = 2,
    threads: int = 8,
    env: dict[str, str] | None = None,
) -> RunningService:
    """`sm-emulator serve` on a free port, waited for until it accepts TLS connections."""
    server = tls.issue("server", server=True)
    port = _free_port()
    args = [
        str(Path(sys.executable).parent / "sm-emulator"),
        "serve",
        "--state", str(state),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--tls-cert", str(server.cert),
        "--tls-key", str(server.key),
        "--workers", str(workers),
        "--threads", str(threads),
    ]  # fmt: skip
    if client_ca is not None:
        args += ["--client-ca", str(client_ca)]
    if tokens_file is not None:
        args += ["--tokens-file", str(tokens_file)]
    log = state.parent / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            args,
            env={**os.environ, "SM_EMULATOR_FAKE_NOW": FAKE_NOW, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=output,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sm-emulator serve exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return RunningService(process, port, server)
        except OSError:
            time.sleep(0.1)
    os.killpg(process.pid, 9)
    process.wait(timeout=30)
    raise RuntimeError("sm-emulator serve did not start")


class HttpsClient:
    """One keep-alive HTTPS connection to the service."""

    def __init__(
        self,
        port: int,
        ca: Path,
        *,
        client: TlsFiles | None = None,
        token: str | None = None,
    ) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        if client is not None:
            context.load_cert_chain(str(client.cert), str(client.key))
        self.connection = http.client.HTTPSConnection(
            "127.0.0.1", port, context=context, timeout=30
        )
        self.headers = {"Content-Type": "application/json"}
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        self.connection.request(method, path, body=data, headers=self.headers)
        response = self.connection.getresponse()
        return response.status, json.loads(response.read())

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> HttpsClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def meter_on(key: LoadedKey, pan: str, ti: int = 1) -> MeterState:
    """A meter manufactured on `key` (its decoder key derived here, independently of the SM)."""
    params = KeyParameters.from_values(
        dkga=key.dkga,
        ea="11",
        sgc=key.identity.sgc,
        ti=ti,
        krn=key.identity.krn,
        kt=key.identity.kt,
        base_date=key.base_date,
        ken=key.ken,
    )
    return manufactured(
        pan=pan,
        sgc=key.identity.sgc,
        ti=ti,
        krn=key.identity.krn,
        kt=key.identity.kt,
        ken=key.ken,
        base_date=params.base_date,
        dkga=key.dkga,
        decoder_key=derive_decoder_key(VendingKey(key.key_value), Pan(pan), params),
        manufacture_tid=0,
    )
