"""SM registry: bulk registration of 10,000 CSRs end to end, on SQLite and PostgreSQL.

Run: `python -m bench registry` (BENCH_REGISTRY_N changes the count). The CSRs (P-384 keys,
ECDSA-SHA384) are made before timing starts. "End to end" is what `kmc sm register-bulk
FILE.zip` does: read each zip member, verify the CSR, check uniqueness, write the SM, its
history row and its audit entry, committed in groups of `service.COMMIT_EVERY`. The
PostgreSQL database is fresh, so the upload grows its tables from empty. The floor is the
bare CSR parse + signature verification rate (`sm_registry.csr.parse_request`) in the same run.
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from pathlib import Path

from bench._instances import BACKENDS, bench_instance, postgres_available
from factories.callers import caller
from factories.csr import make_csr
from sm_registry import service
from sm_registry.bulk import zip_items
from sm_registry.csr import parse_request

COUNT = int(os.environ.get("BENCH_REGISTRY_N", "10000"))
ADMIN = service.Caller("bench", "admin")


def make_archive(folder: Path) -> tuple[Path, list[bytes]]:
    csrs = [make_csr(str(600_000_000_000 + i), "BE0C") for i in range(COUNT)]
    archive = folder / "csrs.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for i, csr in enumerate(csrs):
            zf.writestr(f"sm-{i:05d}.pem", csr)
    return archive, csrs


def verification_rate(csrs: list[bytes]) -> float:
    start = time.perf_counter()
    for csr in csrs:
        parse_request(csr)
    return len(csrs) / (time.perf_counter() - start)


def bulk_rate(backend: str, archive: Path) -> tuple[float, int]:
    with bench_instance(backend, "kmc_bench_registry") as (app, _folder, _url):
        with app.app_context():
            service.create_manufacturer(caller("bench"), "BE0C", "Bench")
            start = time.perf_counter()
            _count, items = zip_items(archive)
            accepted = sum(
                r.accepted for r in service.register_many(ADMIN, items, "virtual", None, "BE0C")
            )
            elapsed = time.perf_counter() - start
    return accepted / elapsed, accepted


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        started = time.perf_counter()
        archive, csrs = make_archive(Path(tmp))
        print(
            f"prepared {COUNT} P-384 CSRs in {time.perf_counter() - started:.1f} s (not measured)"
        )
        floor = verification_rate(csrs)
        print(f"floor: CSR parse + ECDSA P-384 verification   {floor:8.0f} CSRs/s")
        for backend in BACKENDS:
            if backend == "postgres" and not postgres_available():
                print("postgres: not reachable, skipped")
                continue
            rate, accepted = bulk_rate(backend, archive)
            print(
                f"{backend:<8} bulk register-bulk end to end      {rate:8.0f} SMs/s "
                f"({accepted} accepted, {rate / floor:.0%} of the floor)"
            )


if __name__ == "__main__":
    main()
