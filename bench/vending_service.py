"""Vending service over HTTPS: credit tokens/s and p50/p95 latency at 1, 16 and 64 clients.

Run: ``python -m bench vending_service``. The real `sm-emulator serve` (gunicorn, 2 worker
processes x 8 threads, TLS, bearer token) over a state folder with durable TIDs and limits
(a CLM on every key); each client is a thread with one keep-alive HTTPS connection, vending
round robin over 1 000 meters. EA11 always; EA07 when `$STS_EA07_TABLES` names the tables.
Floor, same run: the in-process `Vending.credit` rate on a copy of the same state (no HTTP).
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


def _in_process(state: Path, ea: str, krn: int) -> float:
    sm = SecurityModule(state, clock=lambda: NOW)
    vending = Vending(sm, ea07_tables=os.environ.get("STS_EA07_TABLES"))
    count, stop = 0, time.monotonic() + _SECONDS
    began = time.monotonic()
    while time.monotonic() < stop:
        meter = MeterKey(
            KeyIdentity(SGC, krn, 2),
            Pan(_PANS[count % 1000]),
            TariffIndex(1),
            EncryptionAlgorithm(ea),
        )
        vending.credit(
            meter, CreditSubclass.ELECTRICITY, TransferAmount.from_decimal("10"), Decimal(1)
        )
        count += 1
    sm.close()
    return count / (time.monotonic() - began)


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
                    rate, latencies = _run(service.port, tls.pem, token, clients, ea, krn)
                    cuts = statistics.quantiles(latencies, n=100)
                    print(
                        f"EA{ea} HTTPS {clients:>2} clients: {rate:7.0f} tokens/s  "
                        f"p50 {cuts[49] * 1000:6.1f} ms  p95 {cuts[94] * 1000:6.1f} ms"
                    )
        finally:
            service.stop()
        for ea, krn in eas:
            print(
                f"floor: EA{ea} in-process Vending.credit (durable): {_in_process(copy, ea, krn):7.0f} tokens/s"
            )
