"""The database handle shared by every KMC package, and its SQLite connection policy."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar, overload

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, TypeDecorator, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


class _NoResultRows(logging.Filter):
    """SQLAlchemy's statement log shows each result row at DEBUG: password and token hashes,
    sealed keys. No level of the KMC's logs shows them (the parameters are hidden by the engine
    option `hide_parameters`, see kmc.app)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.DEBUG


_NO_RESULT_ROWS = _NoResultRows()


def hide_result_rows() -> None:
    """Keep result rows out of the statement log (idempotent: one filter, added once)."""
    logging.getLogger("sqlalchemy.engine.Engine").addFilter(_NO_RESULT_ROWS)


def configure_sqlite(engine: Engine) -> None:
    """Make SQLite transactions take the write lock up front (BEGIN IMMEDIATE).

    SQLite allows one writer; a deferred transaction that reads and then writes can fail with
    "database is locked" when another writer got in between. Taking the lock at BEGIN turns that
    into an orderly wait (busy_timeout), which keeps the audit chain linear under concurrent
    writers. Recipe: SQLAlchemy's pysqlite "serializable isolation" notes.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC on every backend and returned timezone-aware (UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


_IN_USE_CASE = "kmc.in_use_case"
_COMMITTING = "kmc.use_case_commits"
_RECORD = "_kmc_refusal_record"
P = ParamSpec("P")
R = TypeVar("R")
E = TypeVar("E", bound=BaseException)


class CommitOutsideUseCase(RuntimeError):
    """A commit of the shared session that no use case made: a programming error."""


class RunAgain(Exception):  # noqa: N818 - an instruction to the use case, not an error
    """Raised inside a use case whose work lost a race (a concurrent transaction took the same
    unique value first): the outermost use case rolls back and runs again, at most `attempts`
    times (`use_case(attempts=...)`), then fails with `refusal`."""

    def __init__(self, refusal: BaseException) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal


def audited_refusal(refusal: E, record: Callable[[], None]) -> E:
    """Mark `refusal` as one the audit log keeps, and return it to be raised.

    `record` writes the refusal's audit entry. Whoever rolls back the refused work writes it
    afterwards: the outermost use case in a fresh transaction that it commits before
    re-raising, or a caller that catches the refusal and carries on (`keep_record`).
    """
    setattr(refusal, _RECORD, record)
    return refusal


def keep_record(refusal: BaseException) -> None:
    """Write a caught audited refusal's entry in the current transaction (once); for callers
    that carry on after a refusal, e.g. a bulk upload refusing one item."""
    record: Callable[[], None] | None = refusal.__dict__.pop(_RECORD, None)
    if record is not None:
        record()


def _commit() -> None:
    db.session.info[_COMMITTING] = True
    try:
        db.session.commit()
    finally:
        db.session.info.pop(_COMMITTING, None)


def _fail(error: BaseException) -> None:
    """Roll the use case back; an audited refusal's entry then commits on its own."""
    db.session.rollback()
    if _RECORD in getattr(error, "__dict__", ()):
        try:
            keep_record(error)
            _commit()
        except BaseException:
            db.session.rollback()
            raise


@overload
def use_case(function: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def use_case(*, attempts: int = 1) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def use_case(
    function: Callable[P, R] | None = None, /, *, attempts: int = 1
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Mark a service function as one use case owning one transaction.

    It commits when the function returns and rolls back when it raises, so every change and its
    audit entry land together or not at all. A use case called from inside another joins the
    outer one's transaction instead of committing half-way: only the outermost commits.

    A refusal marked with `audited_refusal` still leaves its audit entry: after the rollback
    the entry is written and committed on its own, then the refusal is raised. A function that
    may lose a race raises `RunAgain`; with `attempts` > 1 the outermost use case then rolls
    back and runs it again. Committing the session any other way raises `CommitOutsideUseCase`.
    """

    def decorate(function: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(function)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            info = db.session.info
            if info.get(_IN_USE_CASE):
                return function(*args, **kwargs)
            info[_IN_USE_CASE] = True
            try:
                for attempt in range(1, attempts + 1):
                    try:
                        result = function(*args, **kwargs)
                        _commit()
                        return result
                    except RunAgain as again:
                        if attempt < attempts:
                            db.session.rollback()
                            continue
                        _fail(again.refusal)
                        raise again.refusal from None
                    except BaseException as error:
                        _fail(error)
                        raise
                raise AssertionError("unreachable")  # pragma: no cover
            finally:
                info.pop(_IN_USE_CASE, None)

        return run

    return decorate if function is None else decorate(function)


def in_use_case() -> bool:
    """Whether the current code runs inside a use case (which will commit it)."""
    return bool(db.session.info.get(_IN_USE_CASE))


@event.listens_for(db.session, "before_commit")
def _only_use_cases_commit(session: Any) -> None:
    """Only a use case commits: a commit elsewhere (or inside a use case, half-way through it)
    would make part of a change durable without the rest or its audit entry. A savepoint being
    released inside a use case is fine."""
    if session.info.get(_COMMITTING):
        return
    if session.info.get(_IN_USE_CASE) and session.in_nested_transaction():
        return
    raise CommitOutsideUseCase(
        "the session is committed only by a use case (kmc.database.use_case); "
        "decorate the service function instead of committing"
    )
