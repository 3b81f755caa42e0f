"""Vending service over HTTPS: credit tokens/s and p50/p95 latency at 1, 16 and 64 clients.

Run: ``python -m bench vending_service``. The real `sm-emulator serve` (gunicorn, 2 worker
processes x 8 threads, TLS, bearer token) over a state folder with durable TIDs and limits
(a CLM on every key); each client is a thread with one keep-alive HTTPS connection, vending
round robin over 1 000 meters. EA11 always; EA07 when `$STS_EA07_TABLES` names the tables.
Beside each HTTPS figure: the server's CPU time per token (its processes' utime + stime from
/proc, so a loaded machine shows in the wall-clock figures but less in this one).
Floors, same run, on a copy of the same state (no HTTP): the in-process `Vending.credit` rate
from one thread (one commit per token) and from 16 threads through one `GroupCommit` (as a
service worker's threads), with the tokens per commit it achieved.
Targets (issue 12): >= 1 500 tokens/s at 16 clients, p95 < 50 ms.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path

from factories.emulator import NOW, loaded_key
from factories.tls import TlsCa
from factories.vending_service import SGC, HttpsClient, loaded_state, start_service
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


def _run(
    port: int, ca: Path, token: str, clients: int, ea: str, krn: int
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + _SECONDS

    def client(index: int) -> None:
        mine: list[float] = []
        with HttpsClient(port, ca, token=token) as https:
            n = index
            while time.monotonic() < stop:
                body = {
                    "pan": _PANS[n % len(_PANS)], "sgc": SGC, "krn": krn, "kt": 2, "ti": "01",
                    "ea": ea, "amount": "10", "currency": "1",
                }  # fmt: skip
                start = time.perf_counter()
                status, answer = https.call("POST", "/api/v1/tokens/credit", body)
                mine.append(time.perf_counter() - start)
                assert status == 200, answer
                n += clients
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
                for clients in (1, 16, 64):
                    cpu = _server_cpu(service.process.pid)
                    rate, latencies = _run(service.port, tls.pem, token, clients, ea, krn)
                    cpu = _server_cpu(service.process.pid) - cpu
                    cuts = statistics.quantiles(latencies, n=100)
                    print(
                        f"EA{ea} HTTPS {clients:>2} clients: {rate:7.0f} tokens/s  "
                        f"p50 {cuts[49] * 1000:6.1f} ms  p95 {cuts[94] * 1000:6.1f} ms  "
                        f"server CPU {cpu / len(latencies) * 1000:4.2f} ms/token"
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
