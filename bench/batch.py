"""`sts-token batch` throughput: meters/s for 100 000 EA11 credit rows and 100 000 EA11 key
change sets (4 tokens, key derived per meter: a TID-rollover campaign to the 2035 base date), on
every core, with peak memory. A random sample of the campaign's key change sets is entered into
meter emulators made on the old key: each must be accepted and leave the meter on the new key.

Run: ``python -m bench batch``. Beside the wall-clock rate, meters per CPU-second of the parent
and its workers together (what the run costs on a machine shared with other work). Floor, same
run: `issue_rows` in this process over chunks of `batch.CHUNK` rows, one core, no file I/O, per
CPU-second.
Targets (issue 12): >= 20 000 meters/s credit, >= 5 000 meters/s key change.
"""

from __future__ import annotations

import csv
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from meter_emulator import meter
from meter_emulator.errors import TokenRefused
from sts_token import KeyParameters, Pan, VendingKey, batch, derive_decoder_key
from sts_token.identifiers import luhn_check_digit

_METERS = 100_000
_BASE = {
    "vending_key": bytes(range(20)).hex(), "dkga": "04", "ea": "11", "sgc": "600100", "ti": "01",
    "krn": "1", "kt": "2", "base_date": "2014", "ken": "255",
}  # fmt: skip
_CREDIT = {"subclass": "electricity", "amount": "10"}
_CHANGE = {
    "new_vending_key": bytes(range(1, 21)).hex(), "new_sgc": "600100", "new_ti": "01",
    "new_krn": "2", "new_kt": "2", "new_ken": "255", "new_base_date": "2035", "rollover": "true",
}  # fmt: skip
_SAMPLE = 200
_AT = datetime(2030, 3, 1, 12, 0)


def _rows(extra: dict[str, str], count: int) -> Iterator[dict[str, str]]:
    """The first `count` meters' rows, one at a time (the bench's own memory stays flat)."""
    for n in range(count):
        body = f"6007270{n:010d}"
        yield {**_BASE, "pan": body + luhn_check_digit(body), **extra}


def _write(path: Path, extra: dict[str, str]) -> None:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[*_BASE, "pan", *extra])
        writer.writeheader()
        writer.writerows(_rows(extra, _METERS))


def _cpu_seconds() -> float:
    """User and system CPU time of this process and its finished workers."""
    own, workers = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def _sample_accepted(target: Path) -> int:
    """How many of a random sample of the campaign's sets meters on the old key accept, ending
    on KRN 2 and the 2035 base date."""
    with target.open(newline="") as file:
        rows = random.Random(2035).sample(list(csv.DictReader(file)), _SAMPLE)
    params = KeyParameters.from_values(
        dkga="04", ea="11", sgc="600100", ti=1, krn=1, kt=2, base_date=2014
    )
    accepted = 0
    for row in rows:
        state = meter.manufactured(
            pan=row["pan"], sgc="600100", ti=1, krn=1, kt=2, ken=255,
            base_date=params.base_date, dkga="04",
            decoder_key=derive_decoder_key(
                VendingKey.from_hex(_BASE["vending_key"]), Pan(row["pan"]), params
            ),
            manufacture_tid=0,
        )  # fmt: skip
        try:
            for token in row["tokens"].split():
                state = meter.enter(state, token).state
        except TokenRefused:
            continue
        accepted += (state.krn, state.base_date) == (2, 2035)
    return accepted


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for kind, extra in (("credit", _CREDIT), ("key-change", _CHANGE)):
            source, target = root / f"{kind}.csv", root / f"{kind}-out.csv"
            _write(source, extra)
            cpu = _cpu_seconds()
            began = time.perf_counter()
            issued, refused = batch.run(kind, source, target, _AT)
            seconds = time.perf_counter() - began
            cpu = _cpu_seconds() - cpu
            assert (issued, refused) == (_METERS, 0)
            rss = max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
            )
            print(
                f"batch {kind:10} {_METERS} meters, 2 cores: {_METERS / seconds:8.0f} meters/s"
                f"  ({_METERS / cpu:.0f} per CPU-second)  peak RSS {rss / 1024:.0f} MiB"
            )
            if kind == "key-change":
                print(
                    f"rollover campaign sample: {_sample_accepted(target)} of {_SAMPLE} key change"
                    " sets accepted by meter emulators on the old key, ending on the new key"
                )
            sample = list(_rows(extra, 8 * batch.CHUNK))
            began = time.process_time()
            for start in range(0, len(sample), batch.CHUNK):
                batch.issue_rows(kind, _AT, sample[start : start + batch.CHUNK])
            print(
                f"floor: issue_rows {kind:10} in process, 1 core: "
                f"{len(sample) / (time.process_time() - began):8.0f} meters per CPU-second"
            )
