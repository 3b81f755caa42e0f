"""Vending service over HTTPS: credit tokens/s and p50/p95 latency at 1, 16 and 64 clients.

Run: ``python -m bench vending_service``. The real `sm-emulator serve` (granian, 2 worker
processes x 8 threads, TLS, bearer token) over a state folder with durable TIDs and limits
(a CLM on every key); each client is a thread with one keep-alive HTTPS connection, vending
round robin over 1 000 meters, each answer checked (200, a 20-digit token). The clients send
prebuilt requests and read answers by Content-Length, as wrk does: they share the two cores
with the server. EA11 always; EA07 when `$STS_EA07_TABLES` names the tables.
Beside each HTTPS figure: the server's CPU time per token (its processes' utime + stime from
/proc, so a loaded machine shows in the wall-clock figures but less in this one) and the
load generator's (this process).
Floors, same run, on a copy of the same state (no HTTP): the in-process `Vending.credit` rate
from one thread (one commit per token) and from 16 threads through one `GroupCommit` (as a
service worker's threads), with the tokens per commit it achieved.
Targets (issue 12): >= 1 500 tokens/s at 16 clients, p95 < 50 ms.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import statistics
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from factories.emulator import NOW, loaded_key
from factories.tls import TlsCa
from factories.vending_service import SGC, loaded_state, start_service
from key_load_protocol import KeyIdentity
from sm_emulator.bearer import add_token
from sm_emulator.module import SecurityModule
from sm_emulator.store import DATABASE_FILE, GroupCommit
from sm_emulator.vending import MeterKey, Vending
from sts_token import CreditSubclass, EncryptionAlgorithm, Pan, TariffIndex, TransferAmount
from sts_token.identifiers import luhn_check_digit

_SECONDS = 3.0
_PANS = [
    body + luhn_check_digit(body) for body in (f"6007270{n:010d}" for n in range(1000))
]  # fmt: skip


def _requests(token: str, ea: str, krn: int) -> list[bytes]:
    """One credit request per meter, as the bytes sent (built before the clock starts)."""
    built = []
    for pan in _PANS:
        body = json.dumps(
            {"pan": pan, "sgc": SGC, "krn": krn, "kt": 2, "ti": "01", "ea": ea, "amount": "10",
             "currency": "1"}
        ).encode()  # fmt: skip
        head = (
            "POST /api/v1/tokens/credit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        built.append(head.encode() + body)
    return built


class _Connection:
    """A keep-alive HTTPS connection sending prebuilt requests and reading each answer by its
    Content-Length: the load generator shares the two cores with the server, so it does as
    little as wrk would (http.client cost about three times as much CPU per request)."""

    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port))
        self.socket = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.buffer = b""

    def call(self, request: bytes) -> tuple[bytes, bytes]:
        """(status line and headers, body) of the answer to `request`."""
        self.socket.sendall(request)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._receive()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        length = int(head.lower().partition(b"content-length:")[2].split(b"\r\n")[0])
        while len(self.buffer) < length:
            self.buffer += self._receive()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return head, body

    def _receive(self) -> bytes:
        data = self.socket.recv(65536)
        if not data:
            raise ConnectionError("the service closed the connection")
        return data

    def close(self) -> None:
        self.socket.close()


def _run(requests: list[bytes], port: int, ca: Path, clients: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    context = ssl.create_default_context(cafile=str(ca))
    stop = time.monotonic() + _SECONDS

    def client(index: int) -> None:
        mine: list[float] = []
        connection = _Connection(port, context)
        n = index
        while time.monotonic() < stop:
            start = time.perf_counter()
            head, body = connection.call(requests[n % len(requests)])
            mine.append(time.perf_counter() - start)
            assert head.startswith(b"HTTP/1.1 200"), (head, body)
            assert len(json.loads(body)["tokens"][0]) == 20, body
            n += clients
        connection.close()
        with lock:
            latencies.extend(mine)

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.monotonic() - began), latencies


def _server_cpu(group: int) -> float:
    """CPU seconds used so far by the server's processes (its session's process group)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # a process that ended while we looked
        if int(fields[2]) == group:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _in_process(state: Path, ea: str, krn: int, threads: int) -> tuple[float, float]:
    """(tokens/s, tokens per commit) of `threads` threads vending in process; one thread
    writes through its own store (a commit per token), more share one `GroupCommit`."""
    writer = GroupCommit(state / DATABASE_FILE) if threads > 1 else None
    stop = time.monotonic() + _SECONDS
    counts = [0] * threads

    def vend(index: int) -> None:
        sm = SecurityModule(state, clock=lambda: NOW)
        vending = Vending(sm, ea07_tables=os.environ.get("STS_EA07_TABLES"), writer=writer)
        n = index
        while time.monotonic() < stop:
            meter = MeterKey(
                KeyIdentity(SGC, krn, 2), Pan(_PANS[n % 1000]), TariffIndex(1),
                EncryptionAlgorithm(ea),
            )  # fmt: skip
            vending.credit(
                meter, CreditSubclass.ELECTRICITY, TransferAmount.from_decimal("10"), Decimal(1)
            )
            counts[index] += 1
            n += threads
        sm.close()

    began = time.monotonic()
    workers = [threading.Thread(target=vend, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    rate = sum(counts) / (time.monotonic() - began)
    if writer is None:
        return rate, 1.0
    writer.close()
    return rate, sum(counts) / writer.commits


def main() -> None:
    eas = [("11", 1)] + ([("07", 2)] if os.environ.get("STS_EA07_TABLES") else [])
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        keys = [loaded_key(SGC, clm=Decimal(10**9))]
        if len(eas) > 1:
            keys.append(
                loaded_key(SGC, krn=2, dkga="02", eas=frozenset({"07"}), clm=Decimal(10**9))
            )
        state = loaded_state(root / "sm", *keys)
        copy = root / "copy"
        shutil.copytree(state, copy)
        tls = TlsCa(root / "tls")
        token = add_token(root / "tokens", "bench")
        service = start_service(state, tls, tokens_file=root / "tokens")
        try:
            for ea, krn in eas:
                requests = _requests(token, ea, krn)
                for clients in (1, 16, 64):
                    cpu, own = _server_cpu(service.process.pid), time.process_time()
                    rate, latencies = _run(requests, service.port, tls.pem, clients)
                    cpu = _server_cpu(service.process.pid) - cpu
                    own = time.process_time() - own
                    cuts = statistics.quantiles(latencies, n=100)
                    print(
                        f"EA{ea} HTTPS {clients:>2} clients: {rate:7.0f} tokens/s  "
                        f"p50 {cuts[49] * 1000:6.1f} ms  p95 {cuts[94] * 1000:6.1f} ms  "
                        f"CPU per token: server {cpu / len(latencies) * 1000:4.2f} ms, "
                        f"clients {own / len(latencies) * 1000:4.2f} ms"
                    )
        finally:
            service.stop()
        for ea, krn in eas:
            for threads in (1, 16):
                rate, grouped = _in_process(copy, ea, krn, threads)
                print(
                    f"floor: EA{ea} in-process Vending.credit (durable), {threads:>2} threads: "
                    f"{rate:7.0f} tokens/s  {grouped:5.1f} tokens/commit"
                )
