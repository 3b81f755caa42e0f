"""Token identifier (TID): whole minutes since the key's base date, 24 bits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sts_token.errors import TidOutOfRange
from sts_token.identifiers import BaseDate

TID_LIMIT = 1 << 24
_MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Tid:
    """A 24-bit TID; build from a wall-clock time with :meth:`at`."""

    value: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.value, bool)
            or not isinstance(self.value, int)
            or not 0 <= self.value < TID_LIMIT
        ):
            raise TidOutOfRange(f"TID must be an integer 0..{TID_LIMIT - 1}, got {self.value!r}")

    @classmethod
    def at(cls, issued: datetime, base_date: BaseDate) -> Tid:
        """TID for a naive issue time: floor of minutes since the base date (seconds dropped).

        The reference oracle's extra minute at 00:01 (SPEC 5.2) is deliberately not reproduced.
        """
        if issued.tzinfo is not None:
            raise TidOutOfRange("issue time must be naive wall-clock time (no time zone)")
        start = base_date.start
        if issued < start:
            raise TidOutOfRange(
                f"issue time {issued:%Y-%m-%d %H:%M} is before the base date {base_date.year}"
            )
        minutes = (issued - start) // _MINUTE
        if minutes >= TID_LIMIT:
            raise TidOutOfRange(
                f"issue time {issued:%Y-%m-%d %H:%M} is past the 24-bit TID range of base date "
                f"{base_date.year} (last {cls.last_time(base_date):%Y-%m-%d %H:%M})"
            )
        return cls(minutes)

    @staticmethod
    def last_time(base_date: BaseDate) -> datetime:
        """The last minute expressible with this base date."""
        return base_date.start + timedelta(minutes=TID_LIMIT - 1)

    def datetime(self, base_date: BaseDate) -> datetime:
        """The issue minute this TID stands for under ``base_date``."""
        return base_date.start + timedelta(minutes=self.value)
