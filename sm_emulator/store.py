"""The SM's state database: one SQLite file in the state folder (stdlib sqlite3, WAL).

Every state change runs in `BEGIN IMMEDIATE` with `synchronous=FULL`, so a committed counter or
TID survives a crash (and a power loss) before the token it covers is printed. Reads that must
agree with each other run in one deferred transaction (a snapshot). Key values are stored
sealed (see `sm_emulator.sealing`), never in clear.

Writers queue on an exclusive `flock` of `STATE/state.lock` before `BEGIN IMMEDIATE`: the
kernel wakes the next writer the moment the lock is released, where SQLite's own busy handler
would poll with sleeps of up to 100 ms (the p95 of a contended service). `GroupCommit` lets the
threads of one process share a transaction and its fsync: each thread's work runs in its own
savepoint, and every thread is answered only after the one commit that covers its work.
A write whose storage SQLite fails (`is_fault`: disk full, I/O error, a corrupt file, a lock
held past the timeout by a process that skips the writer lock) rolls back and is raised as
`StateUnavailable`, whichever writer ran it; in a group commit every vend of the group gets
that error.

    Writer          what a use case writes through: `write(work)` runs work(db) durably
    ├── Store       one connection; each `write` its own transaction
    └── GroupCommit one connection per process; concurrent `write`s share a commit
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

from sm_emulator.errors import StateUnavailable

T = TypeVar("T")

DATABASE_FILE = "state.db"
LOCK_FILE = "state.lock"
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


Work = Callable[[sqlite3.Connection], T]


class Writer(Protocol):
    def write(self, work: Work[T]) -> T:
        """work(db) inside a write transaction; its result once that transaction is durable."""


def _connect(path: Path, *, shared: bool = False) -> sqlite3.Connection:
    # Autocommit mode: transactions are opened explicitly, so BEGIN IMMEDIATE is ours to issue.
    db = sqlite3.connect(
        path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=not shared
    )
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


# SQLite's primary result codes that mean the storage failed, not our SQL: BUSY, LOCKED, NOMEM,
# READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
_FAULTS = frozenset({5, 6, 7, 8, 10, 11, 13, 14, 15, 26})


def is_fault(error: BaseException | None) -> bool:
    """Whether `error` is SQLite failing its storage (a disk, a lock, a file), which a write
    reports as `StateUnavailable`; a defect in our SQL stays what it is (a 500, its traceback
    logged)."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.Error) and code is not None and code & 0xFF in _FAULTS


def _roll_back(db: sqlite3.Connection) -> None:
    """Roll back what is open, if SQLite has not already; a failing rollback changes nothing
    for the caller, who reports the error that came first."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            pass


class _WriterLock:
    """The state folder's writer lock: an exclusive `flock`, one per open file description, so
    it excludes the other threads (each with its own `Store`) as well as the other processes."""

    def __init__(self, database: Path) -> None:
        self._fd = os.open(database.with_name(LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)

    def close(self) -> None:
        os.close(self._fd)

    @contextmanager
    def held(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class Store:
    """A connection to one SM's state database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = _connect(path)
        self._lock = _WriterLock(path)

    def close(self) -> None:
        self._db.close()
        self._lock.close()

    def create_schema(self) -> None:
        with self.transaction() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE, committed on success, rolled back on any error."""
        with self._lock.held():
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    _roll_back(self._db)
                    raise
            except sqlite3.Error as error:
                if is_fault(error):
                    raise StateUnavailable(str(error)) from error
                raise

    def write(self, work: Work[T]) -> T:
        with self.transaction() as db:
            return work(db)

    def autocommit(self) -> sqlite3.Connection:
        """The connection outside any transaction, for reads that need not agree with each
        other: one statement sees one committed state by itself, without the BEGIN and ROLLBACK
        of a snapshot."""
        return self._db

    @contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        self._db.execute("BEGIN")
        try:
            yield self._db
        finally:
            self._db.execute("ROLLBACK")


class _Job:
    """One thread's work in a group commit, and what came of it."""

    def __init__(self, work: Work[object]) -> None:
        self.work = work
        self.value: object = None
        self.error: BaseException | None = None
        self.leads = False
        self.woken = threading.Event()


class GroupCommit:
    """Write transactions of the threads of one process, committed together.

    The first thread to arrive leads: it takes everything queued, runs each work in a savepoint
    of one `BEGIN IMMEDIATE` transaction (a work that raises is rolled back alone and its thread
    gets the error), commits once, and only then wakes the threads. Work queued meanwhile goes
    to the next leader, chosen from the waiting threads, so a leader answers its own request
    straight after its commit. Under load many vends share one fsync; alone, a vend commits at
    once. Open it in the process that uses it (after any fork).
    """

    def __init__(self, path: Path) -> None:
        self._db = _connect(path, shared=True)  # only ever used by the current leader
        self._lock = _WriterLock(path)
        self._mutex = threading.Lock()
        self._queue: list[_Job] = []
        self._leading = False
        self.commits = 0  # transactions committed: vends per commit is the grouping achieved

    def close(self) -> None:
        self._db.close()
        self._lock.close()

    def write(self, work: Work[T]) -> T:
        job = _Job(work)
        with self._mutex:
            self._queue.append(job)
            if not self._leading:
                self._leading = job.leads = True
                job.woken.set()
        job.woken.wait()
        if job.leads:
            self._lead()
        if is_fault(job.error):
            raise StateUnavailable(str(job.error)) from job.error
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[return-value]  # what this job's work returned

    def _lead(self) -> None:
        with self._mutex:
            batch, self._queue = self._queue, []
        try:
            self._commit(batch)
        finally:
            with self._mutex:
                if self._queue:
                    self._queue[0].leads = True
                    self._queue[0].woken.set()
                else:
                    self._leading = False
            for job in batch:
                job.woken.set()

    def _commit(self, batch: list[_Job]) -> None:
        db = self._db
        with self._lock.held():
            try:
                db.execute("BEGIN IMMEDIATE")  # may fail too: every job then gets the error
                for job in batch:
                    db.execute("SAVEPOINT job")
                    try:
                        job.value = job.work(db)
                    except Exception as error:
                        job.error = error
                        if is_fault(error):
                            raise  # SQLite may have rolled back everything: the group fails
                        db.execute("ROLLBACK TO job")
                    db.execute("RELEASE job")
                db.execute("COMMIT")
                self.commits += 1
            except BaseException as error:
                for job in batch:
                    if job.error is None:
                        job.error, job.value = error, None
                _roll_back(db)
