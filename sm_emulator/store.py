"""The SM's state database: one SQLite file in the state folder (stdlib sqlite3, WAL).

Every state change runs in `BEGIN IMMEDIATE` (one writer at a time across processes) with
`synchronous=FULL`, so a committed counter or TID survives a crash before the token it covers
is printed. Reads that must agree with each other run in one deferred transaction (a snapshot).
Key values are stored sealed (see `sm_emulator.sealing`), never in clear.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATABASE_FILE = "state.db"
SCHEMA_VERSION = 1
# Waiting up to this long for another process's write transaction is normal contention.
BUSY_TIMEOUT_SECONDS = 60.0

SCHEMA = """
CREATE TABLE identity (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version  INTEGER NOT NULL,
    smid            TEXT NOT NULL,
    id_man          TEXT NOT NULL,
    kind            TEXT NOT NULL,
    register_count  INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    root_pem        BLOB,
    certificate_pem BLOB,
    chain_pem       BLOB,
    last_sequence   INTEGER
);
CREATE TABLE outstanding_request (
    nonce      BLOB PRIMARY KEY,
    made_at    TEXT NOT NULL,
    keys       TEXT NOT NULL
);
CREATE TABLE loaded_file (
    sequence     INTEGER PRIMARY KEY,
    file_sha256  TEXT NOT NULL UNIQUE,
    kmc_id       TEXT NOT NULL,
    issue_time   TEXT NOT NULL,
    loaded_at    TEXT NOT NULL,
    key_count    INTEGER NOT NULL
);
CREATE TABLE key_register (
    slot            INTEGER PRIMARY KEY,
    sgc             TEXT NOT NULL,
    krn             INTEGER NOT NULL,
    kt              INTEGER NOT NULL,
    ken             INTEGER NOT NULL,
    base_date       INTEGER NOT NULL,
    dkga            TEXT NOT NULL,
    eas             TEXT NOT NULL,
    act             TEXT NOT NULL,
    exp             TEXT NOT NULL,
    iut             TEXT NOT NULL,
    clm             TEXT,
    resource_limit  INTEGER,
    refresh_days    INTEGER,
    kcv             TEXT NOT NULL,
    sealed_key      BLOB NOT NULL,
    sequence        INTEGER NOT NULL,
    loaded_at       TEXT NOT NULL,
    currency_used   TEXT NOT NULL DEFAULT '0',
    units_used      INTEGER NOT NULL DEFAULT 0,
    tokens_issued   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (sgc, krn, kt)
);
CREATE TABLE issued_tid (
    pan        TEXT NOT NULL,
    tid        INTEGER NOT NULL,
    slot       INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    issued_at  TEXT NOT NULL,
    PRIMARY KEY (pan, tid)
) WITHOUT ROWID;
"""


class Store:
    """A connection to one SM's state database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # Autocommit mode: transactions are opened explicitly, so BEGIN IMMEDIATE is ours to issue.
        self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        self._db.close()

    def create_schema(self) -> None:
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE, committed on success, rolled back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        self._db.execute("BEGIN")
        try:
            yield self._db
        finally:
            self._db.execute("ROLLBACK")
