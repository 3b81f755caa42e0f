"""Where the KMC gets the time from, so tests can move it."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import current_app


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock a test sets and advances by hand."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at


def now() -> datetime:
    """The current UTC time from the app's clock (`app.extensions["kmc.clock"]`)."""
    clock: SystemClock | FixedClock = current_app.extensions["kmc.clock"]
    return clock.now()
