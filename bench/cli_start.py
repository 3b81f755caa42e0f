"""How fast `kmc --help` starts (target: under 150 ms), beside the floor of a bare interpreter.

Times whole processes (best and median of 15) and lists what `python -X importtime` says the
slowest imports of `kmc.cli` are, so a regression names its cause.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

RUNS = 15
TARGET_MS = 150.0


def _times(command: list[str]) -> list[float]:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return times


def _slowest_imports(module: str, count: int = 5) -> list[tuple[int, str]]:
    report = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows = []
    for line in report.splitlines()[1:]:
        _self, cumulative, name = (part.strip() for part in line.split(":", 1)[1].split("|"))
        rows.append((int(cumulative), name))
    return sorted(rows, reverse=True)[:count]


def main() -> None:
    kmc = shutil.which("kmc", path=str(Path(sys.executable).parent)) or "kmc"
    floor = _times([sys.executable, "-c", "pass"])
    start = _times([kmc, "--help"])
    print(f"interpreter floor: best {min(floor):.0f} ms, median {statistics.median(floor):.0f} ms")
    print(
        f"kmc --help:        best {min(start):.0f} ms, median {statistics.median(start):.0f} ms"
        f" (target < {TARGET_MS:.0f} ms: {'met' if statistics.median(start) < TARGET_MS else 'MISSED'})"
    )
    print("slowest imports of kmc.cli (cumulative µs):")
    for cumulative, name in _slowest_imports("kmc.cli"):
        print(f"  {cumulative:>8}  {name}")


if __name__ == "__main__":
    main()
