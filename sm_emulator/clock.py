"""The SM's idea of "now": the system clock, or a visibly named test override.

STS 600-4-2 dates of use (ACT, IUT) are enforced against this clock, so tests need to move it.
`SM_EMULATOR_FAKE_NOW` (ISO 8601, UTC when no zone is given) replaces the system clock for every
command; it exists for tests and demonstrations only and is reported by `sm-emulator keys`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

from sm_emulator.errors import InvalidRequest

FAKE_NOW_VARIABLE = "SM_EMULATOR_FAKE_NOW"

Clock = Callable[[], dt.datetime]


def system_now() -> dt.datetime:
    """The system clock, aware UTC."""
    return dt.datetime.now(dt.UTC)


def parse_time(text: str, what: str) -> dt.datetime:
    """An ISO 8601 date-time as aware UTC (naive input is read as UTC)."""
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            "invalid_time", f"{what}: {text!r} is not an ISO 8601 date-time"
        ) from None
    return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def from_environment() -> Clock:
    """The clock commands use: `$SM_EMULATOR_FAKE_NOW` when set (tests), else the system clock."""
    fake = os.environ.get(FAKE_NOW_VARIABLE)
    if not fake:
        return system_now
    fixed = parse_time(fake, FAKE_NOW_VARIABLE)
    return lambda: fixed
