"""Exponential back-off after failed logins and bad API tokens, and their audit in aggregate.

Counters live in the `login_throttle` table, so every gunicorn worker and every node sees the
same waits. A row counts the failures of one account name (`ACCOUNT`, known or not, so a wait
never tells whether an account exists) or of one client address (`LOGIN_ADDRESS`,
`TOKEN_ADDRESS`). After `free` failures each further one doubles the wait, up to `cap`; an
attempt made during a wait is refused without being checked or counted, so hammering does not
lengthen it; a counter with no failure for `FORGET_AFTER` starts again from zero.

Failures are audited per address and `WINDOW`: the first failure of a window appends one
`login.failure` (`api_token.failure`) entry at once; the rest are counted in the row, and when
the window has ended (or a login from that address succeeds) one `login.failures`
(`api_token.failures`) entry sums it up, if it counted more than that first failure. Audit
entries are immutable and hash-chained, so nothing is updated in place (docs/accounts.md).

Callers hold rows with `hold` (insert if absent, then `SELECT ... FOR UPDATE`), accounts before
addresses, so concurrent attempts on one counter queue instead of losing updates; `sweep`
only takes rows nobody holds (`SKIP LOCKED`), so it never waits on another attempt.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite

from kmc.accounts.models import LoginThrottle
from kmc.audit import service as audit
from kmc.database import db


@dataclass(frozen=True)
class Scope:
    """What a row counts, and how much it forgives."""

    name: str
    free: int  # failures before the first wait
    cap: timedelta  # the longest wait
    action: str = ""  # audit action prefix of an address scope ("" for accounts: not audited)
    tried: str = ""  # the audit field naming what was tried (a username, a token id)

    def wait_after(self, failures: int) -> timedelta:
        if failures < self.free:
            return timedelta(0)
        return min(timedelta(seconds=2 ** (failures - self.free)), self.cap)


ACCOUNT = Scope("account", free=3, cap=timedelta(minutes=5))
LOGIN_ADDRESS = Scope(
    "login-address", free=10, cap=timedelta(minutes=15), action="login", tried="username"
)
TOKEN_ADDRESS = Scope(
    "token-address", free=10, cap=timedelta(minutes=15), action="api_token", tried="token_id"
)
SCOPES = {scope.name: scope for scope in (ACCOUNT, LOGIN_ADDRESS, TOKEN_ADDRESS)}
FORGET_AFTER = timedelta(hours=1)
WINDOW = timedelta(minutes=15)
MAX_NAMES = 20  # names kept per window summary; the count covers every attempt
SWEEP_BATCH = 200


def hold(scope: Scope, subject: str) -> LoginThrottle:
    """The row of `subject` in `scope`, created if absent, locked until the transaction ends."""
    subject = subject[:120]
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(
        insert(LoginThrottle.__table__)
        .values(scope=scope.name, subject=subject)
        .on_conflict_do_nothing()
    )
    return db.session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.scope == scope.name, LoginThrottle.subject == subject)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def failures(row: LoginThrottle | None, now: datetime) -> int:
    """The failures that still count (none once `FORGET_AFTER` passed without one)."""
    if row is None or row.last_failure_at is None or now - row.last_failure_at >= FORGET_AFTER:
        return 0
    return row.failures


def waiting_until(row: LoginThrottle | None, now: datetime) -> datetime | None:
    if row is None or row.blocked_until is None or row.blocked_until <= now:
        return None
    return row.blocked_until


def wait_seconds(row: LoginThrottle, now: datetime) -> int:
    """Whole seconds left to wait (rounded up), 0 when an attempt may be checked."""
    until = waiting_until(row, now)
    return 0 if until is None else math.ceil((until - now).total_seconds())


def count_failure(row: LoginThrottle, now: datetime) -> None:
    row.failures = failures(row, now) + 1
    row.last_failure_at = now
    wait = SCOPES[row.scope].wait_after(row.failures)
    row.blocked_until = now + wait if wait else None


def clear(row: LoginThrottle) -> None:
    row.failures = 0
    row.last_failure_at = None
    row.blocked_until = None


def note(row: LoginThrottle, now: datetime, tried: str | None, reason: str) -> None:
    """Count a refused attempt in the address's audit window (`reason` "throttled" when it was
    refused for waiting); the first of a window is appended to the audit log at once."""
    scope = SCOPES[row.scope]
    close_window(row, now, ended_only=True)
    names: list[str] = json.loads(row.window_names)
    if tried is not None and tried not in names and len(names) < MAX_NAMES:
        names.append(tried)
    row.window_names = json.dumps(names)
    row.window_failures += 1
    row.window_throttled += reason == "throttled"
    if row.window_start is None:
        row.window_start = now
        audit.record(
            "anonymous",
            f"{scope.action}.failure",
            "address",
            row.subject,
            {scope.tried: tried, "reason": reason, "window_start": now.isoformat()},
        )


def close_window(row: LoginThrottle, now: datetime, *, ended_only: bool = False) -> None:
    """End the row's audit window: a summary entry if it counted more than its first failure.
    With `ended_only`, only a window whose time is up."""
    start = row.window_start
    if start is None or (ended_only and now < start + WINDOW):
        return
    if row.window_failures > 1:
        scope = SCOPES[row.scope]
        audit.record(
            "anonymous",
            f"{scope.action}.failures",
            "address",
            row.subject,
            {
                "failures": row.window_failures,
                "throttled": row.window_throttled,
                f"{scope.tried}s": json.loads(row.window_names),
                "window_start": start.isoformat(),
                "window_end": min(now, start + WINDOW).isoformat(),
            },
        )
    row.window_start = None
    row.window_failures = 0
    row.window_throttled = 0
    row.window_names = "[]"


def sweep(now: datetime) -> None:
    """Sum up the windows that ended and forget rows with nothing left to count, skipping rows
    another attempt holds (it will see to them)."""
    ended = db.session.scalars(
        select(LoginThrottle)
        .where(LoginThrottle.window_start <= now - WINDOW)
        .order_by(LoginThrottle.window_start, LoginThrottle.subject)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    for row in ended:
        close_window(row, now)
    idle = db.session.scalars(
        select(LoginThrottle)
        .where(
            LoginThrottle.window_start.is_(None),
            or_(
                LoginThrottle.last_failure_at.is_(None),
                LoginThrottle.last_failure_at <= now - FORGET_AFTER,
            ),
            or_(LoginThrottle.blocked_until.is_(None), LoginThrottle.blocked_until <= now),
        )
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    for row in idle:
        db.session.delete(row)


def accounts() -> list[LoginThrottle]:
    """Every account row (the admin's view of who is being slowed down)."""
    return list(
        db.session.scalars(select(LoginThrottle).where(LoginThrottle.scope == ACCOUNT.name))
    )
