"""KMC key loading: EKLF issuance for 5-key requests, in process and over HTTP, beside the floor.

Run: ``python -m bench keyload``. In process, each request goes the whole way: parse, verify,
policy checks, unseal 5 keys, build + sign the EKLF, persist the issuance record and the audit
entry (SQLite and PostgreSQL). The floor is `bench.keyload_crypto.crypto_floor_per_second()`,
the cryptographic primitives of one 5-key EKLF alone, measured in the same run; the target is at
least 40% of it. Over HTTP: `kmc serve` (waitress) on PostgreSQL, 16 concurrent clients, each
for its own SM; requests/s and p95 latency (target p95 < 100 ms), with one waitress process
and with gunicorn workers (`kmc serve --workers`).
"""

from __future__ import annotations

import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench._instances import bench_instance, postgres_available
from bench.keyload_crypto import crypto_floor_per_second
from factories.callers import caller
from factories.keys import SGC, add_key, authorise
from factories.registry import Device, add_manufacturer, new_device
from key_load import service as key_load
from key_load_protocol import KeyIdentity
from kmc.accounts.service import create_token, create_user
from kmc.database import use_case

KEYS = tuple(KeyIdentity(SGC, krn, 1) for krn in range(1, 6))
IN_PROCESS_REQUESTS = int(os.environ.get("BENCH_KEYLOAD_N", "300"))
HTTP_CLIENTS = 16
HTTP_REQUESTS_PER_CLIENT = int(os.environ.get("BENCH_KEYLOAD_HTTP_N", "40"))
# `kmc serve --workers`: 1 is waitress in one process; more is gunicorn (docs/keys.md, Figures).
HTTP_WORKERS = int(os.environ.get("BENCH_KEYLOAD_WORKERS", str(2 * (os.cpu_count() or 1))))
HTTP_THREADS_PER_WORKER = int(os.environ.get("BENCH_KEYLOAD_THREADS", "4"))


@use_case
def _add_accounts() -> None:
    add_manufacturer("1A2B", "Bench")
    create_user(caller("bench"), "operator1", "operator", "bench password 123", None)
    create_user(caller("bench"), "admin1", "admin", "bench password 123", None)


def _prepare(app, smids: list[str]) -> list[Device]:
    """Manufacturer, an operator, 5 keys, and the SMs authorised for all of them."""
    with app.app_context():
        _add_accounts()
    for identity in KEYS:
        add_key(app, identity.krn)
    devices = [new_device(app, smid) for smid in smids]
    for device in devices:
        for identity in KEYS:
            authorise(app, device.smid, identity.krn)
    return devices


def in_process_rates(backend: str) -> tuple[float, float]:
    """(EKLF/s by the clock, EKLF/s by this process's CPU time): the gap is waiting on the
    database, mostly the durable commit (one fsync), and on other jobs sharing the machine."""
    with bench_instance(backend, "kmc_bench_keyload") as (app, _folder, _url):
        (device,) = _prepare(app, ["1001"])
        requests = [device.request(KEYS) for _ in range(IN_PROCESS_REQUESTS)]
        with app.app_context():
            key_load.process_request(
                caller("bench"), requests[0]
            )  # warm caches (PKI load, templates)
            start, cpu_start = time.perf_counter(), time.process_time()
            for der in requests[1:]:
                key_load.process_request(caller("bench"), der)
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return (len(requests) - 1) / elapsed, (len(requests) - 1) / cpu


def _serve(folder: Path, url: str, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, KMC_INSTANCE=str(folder), KMC_DATABASE_URL=url, KMC_MODE="test")
    exe = Path(sys.executable).parent / "kmc"
    threads = HTTP_CLIENTS if workers == 1 else HTTP_THREADS_PER_WORKER
    process = subprocess.Popen(
        [str(exe), "serve", "--port", str(port), "--threads", str(threads)]
        + ["--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/login")
            connection.getresponse().read()
            return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("kmc serve did not start")


def http_figures(workers: int, port: int = 5099) -> tuple[float, float, int]:
    """(requests/s, p95 latency in ms, failures) at HTTP_CLIENTS concurrent clients."""
    with bench_instance("postgres", "kmc_bench_keyload_http") as (app, folder, url):
        devices = _prepare(app, [str(2000 + n) for n in range(HTTP_CLIENTS)])
        with app.app_context():
            token = create_token(caller("bench"), "operator1", "bench").secret
        work = [[d.request(KEYS) for _ in range(HTTP_REQUESTS_PER_CLIENT)] for d in devices]
        server = _serve(folder, url, port, workers)
        latencies: list[float] = []
        failures = [0]
        lock = threading.Lock()

        def client(requests: list[bytes]) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/cms"}
            for der in requests:
                start = time.perf_counter()
                connection.request("POST", "/api/v1/keyload", body=der, headers=headers)
                response = connection.getresponse()
                response.read()
                took = time.perf_counter() - start
                with lock:
                    latencies.append(took)
                    failures[0] += response.status != 200

        try:
            threads = [threading.Thread(target=client, args=(w,)) for w in work]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=10)
    p95 = statistics.quantiles(latencies, n=20)[18] * 1000
    return len(latencies) / elapsed, p95, failures[0]


def main() -> None:
    floor = crypto_floor_per_second(5)
    print(f"  crypto floor, one 5-key EKLF (one core)            {floor:>10,.0f} EKLF/s")
    backends = ["sqlite"] + (["postgres"] if postgres_available() else [])
    for backend in backends:
        rate, cpu_rate = in_process_rates(backend)
        print(
            f"  in process, {backend:<8} parse+verify+build+sign+persist+audit "
            f"{rate:>8,.0f} EKLF/s  ({rate / floor:.0%} of floor; target >= 40%); "
            f"by CPU time {cpu_rate:,.0f} EKLF/s ({cpu_rate / floor:.0%})",
            flush=True,
        )
    if not postgres_available():
        print("  HTTP figures skipped: PostgreSQL not reachable")
        return
    for workers in (1, HTTP_WORKERS):
        rate, p95, failures = http_figures(workers)
        server = "waitress, 1 process" if workers == 1 else f"gunicorn, {workers} workers"
        print(
            f"  HTTP, {server} + PostgreSQL, {HTTP_CLIENTS} clients: {rate:,.0f} req/s, "
            f"p95 {p95:.0f} ms (target < 100 ms), {failures} non-200 responses",
            flush=True,
        )


if __name__ == "__main__":
    main()
