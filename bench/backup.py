"""Backup and restore: seconds for a KMC of N rows (audit entries), SQLite and PostgreSQL.

Run: `python -m bench backup`. Set BENCH_BACKUP_N to change N (default 100,000). The backup is
`kmc backup`'s work in process (snapshot, sign, encrypt, write); the restore is `kmc restore`'s
(decrypt, check the signature, insert, verify the whole chain, commit) into an empty instance
on the same software master key.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from bench._instances import BACKENDS, _fresh_postgres, bench_instance, postgres_available
from bench.audit import fill
from kmc import create_app
from kmc.database import db
from kmc.instance_backup import restore_backup, write_backup


def main() -> None:
    count = int(os.environ.get("BENCH_BACKUP_N", "100000"))
    for backend in BACKENDS:
        if backend == "postgres" and not postgres_available():
            print("postgres: not reachable, skipped")
            continue
        with (
            bench_instance(backend, "kmc_bench_backup") as (app, folder, _url),
            tempfile.TemporaryDirectory(prefix="kmc-bench-restore-") as tmp,
        ):
            fill(app, count)
            out = Path(tmp) / "kmc.backup"
            with app.app_context():
                start = time.perf_counter()
                report = write_backup(out, "bench", lambda _n: None)
                backed_up = time.perf_counter() - start
            rows = sum(report.rows.values())
            target = Path(tmp) / "restored"
            target.mkdir(mode=0o700)
            shutil.copy2(folder / "master.key", target / "master.key")
            url = (
                _fresh_postgres("kmc_bench_restore")
                if backend == "postgres"
                else f"sqlite:///{target / 'kmc.sqlite3'}"
            )
            copy = create_app(
                {"KMC_INSTANCE": target, "SQLALCHEMY_DATABASE_URI": url, "KMC_MODE": "test"}
            )
            with copy.app_context():
                start = time.perf_counter()
                restore_backup(out, "bench")
                restored = time.perf_counter() - start
                db.session.remove()
                db.engine.dispose()
            print(
                f"{backend}: {rows:,} rows, {report.size / 1e6:.1f} MB: backup {backed_up:.1f} s "
                f"({rows / backed_up:,.0f} rows/s), restore with chain check {restored:.1f} s "
                f"({rows / restored:,.0f} rows/s)"
            )


if __name__ == "__main__":
    main()
