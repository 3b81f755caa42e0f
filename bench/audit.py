"""Audit log: append throughput (1 and 8 writers, SQLite and PostgreSQL) and verify throughput.

Run: `python -m bench audit` (or `make bench`). Set BENCH_AUDIT_VERIFY_N to change the size of
the verified log (default 1,000,000). The floor is the bare canonical-encoding + SHA-256 rate
of the chain, measured in the same run: verification can never be faster than that.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from bench._instances import BACKENDS, bench_instance, postgres_available
from kmc.audit import service as audit
from kmc.audit.chain import GENESIS, canonical_json, entry_hash, format_time
from kmc.audit.models import AuditEntry
from kmc.audit.service import verify
from kmc.database import db, use_case

APPENDS_PER_WRITER = 400


# One entry per use case: each append commits, as a state change with its entry would.
_append = use_case(audit.record)


def append_rate(app, writers: int) -> float:
    def work(n: int) -> None:
        with app.app_context():
            for i in range(APPENDS_PER_WRITER):
                _append(f"bench{n}", "bench.append", "thing", str(i), {"i": i})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return writers * APPENDS_PER_WRITER / (time.perf_counter() - start)


def chain_rows(count: int, start_seq: int, prev: str):
    at = datetime(2026, 1, 1, tzinfo=UTC)
    for seq in range(start_seq, start_seq + count):
        stamp = at + timedelta(microseconds=seq)
        details = canonical_json({"i": seq})
        digest = entry_hash(
            seq, format_time(stamp), "bench", "bench.fill", "thing", str(seq), details, prev
        )
        yield {
            "seq": seq,
            "at": stamp,
            "actor": "bench",
            "action": "bench.fill",
            "object_type": "thing",
            "object_id": str(seq),
            "details": details,
            "prev_hash": prev,
            "entry_hash": digest,
        }
        prev = digest


def floor_rate(count: int = 200_000) -> float:
    """Only the chain arithmetic verify must do per entry: encode + SHA-256 + compare."""
    rows = [
        (r["seq"], format_time(r["at"]), r["details"], r["entry_hash"])
        for r in chain_rows(count, 1, GENESIS)
    ]
    start = time.perf_counter()
    prev = GENESIS
    for seq, at, details, stored in rows:
        assert (
            entry_hash(seq, at, "bench", "bench.fill", "thing", str(seq), details, prev) == stored
        )
        prev = stored
    return count / (time.perf_counter() - start)


def fill(app, count: int) -> None:
    with app.app_context():
        _fill(count)


@use_case
def _fill(count: int) -> None:
    head = verify().chain
    batch = []
    for row in chain_rows(count, head.head_seq + 1, head.head_hash):
        batch.append(row)
        if len(batch) == 20_000:
            db.session.execute(insert(AuditEntry), batch)
            batch.clear()
    if batch:
        db.session.execute(insert(AuditEntry), batch)


def verify_rate(app) -> tuple[int, float]:
    with app.app_context():
        start = time.perf_counter()
        result = verify()
        elapsed = time.perf_counter() - start
        assert result.ok, result.as_dict()
        return result.chain.entries, result.chain.entries / elapsed


def main() -> None:
    n_verify = int(os.environ.get("BENCH_AUDIT_VERIFY_N", "1000000"))
    print(f"floor: canonical encoding + SHA-256 of chain entries: {floor_rate():,.0f} entries/s")
    for backend in BACKENDS:
        if backend == "postgres" and not postgres_available():
            print("postgres: not reachable, skipped")
            continue
        with bench_instance(backend, "kmc_bench_audit") as (app, _folder, _url):
            for writers in (1, 8):
                print(
                    f"{backend}: append, {writers} writer(s): {append_rate(app, writers):,.0f} entries/s"
                )
            fill(app, n_verify)
            entries, rate = verify_rate(app)
            print(
                f"{backend}: verify {entries:,} entries: {rate:,.0f} entries/s ({entries / rate:.1f} s)"
            )


if __name__ == "__main__":
    main()
