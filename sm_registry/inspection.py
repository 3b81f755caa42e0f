"""The auditor's inspection report of one manufacturer (STS 600-10-1 §4.5): its SMs as they
stood at a moment, their key loads, and a chart of both over time, drawn as SVG on the server
(the CSP allows no script, and a printed page needs none)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

# The chart's drawing box, in SVG user units (the SVG scales to its container).
WIDTH, HEIGHT, MARGIN = 640, 240, 40


@dataclass(frozen=True)
class KeyLoad:
    """One key-load file issued to an SM (what the report shows of it; no key material)."""

    smid: str
    sequence: int
    at: dt.datetime
    keys: int
    file_sha256: str


@dataclass(frozen=True)
class Day:
    """One day of the chart: what happened that day and the running totals after it."""

    day: dt.date
    allocated: int
    loaded: int
    allocated_total: int
    loaded_total: int


@dataclass(frozen=True)
class Chart:
    days: list[Day]
    allocations: str  # SVG polyline points
    key_loads: str
    top: int  # the y-axis maximum

    @property
    def width(self) -> int:
        return WIDTH

    @property
    def height(self) -> int:
        return HEIGHT

    @property
    def margin(self) -> int:
        return MARGIN


def _points(days: list[Day], totals: list[int], top: int) -> str:
    span = max(len(days) - 1, 1)
    plot_w, plot_h = WIDTH - 2 * MARGIN, HEIGHT - 2 * MARGIN
    return " ".join(
        f"{MARGIN + plot_w * i / span:.1f},{HEIGHT - MARGIN - plot_h * total / top:.1f}"
        for i, total in enumerate(totals)
    )


def chart(allocated: Iterable[dt.datetime], loaded: Iterable[dt.datetime]) -> Chart:
    """Allocations (registrations) and key loads per day, as running totals over the days on
    which something happened."""
    per_day_allocated = Counter(moment.astimezone(dt.UTC).date() for moment in allocated)
    per_day_loaded = Counter(moment.astimezone(dt.UTC).date() for moment in loaded)
    days: list[Day] = []
    allocated_total = loaded_total = 0
    for day in sorted(per_day_allocated.keys() | per_day_loaded.keys()):
        allocated_total += per_day_allocated[day]
        loaded_total += per_day_loaded[day]
        days.append(
            Day(day, per_day_allocated[day], per_day_loaded[day], allocated_total, loaded_total)
        )
    top = max(allocated_total, loaded_total, 1)
    return Chart(
        days,
        _points(days, [d.allocated_total for d in days], top),
        _points(days, [d.loaded_total for d in days], top),
        top,
    )
