"""The meter's state file: `STATE/meter.json` (0600), replaced atomically, one writer at a time.

`STATE/meter.lock` is held (flock) for the whole read-apply-write of `enter`, so concurrent
invocations apply tokens one after another and a TID is never accepted twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from meter_emulator.errors import StateError
from meter_emulator.meter import MeterState

STATE_FILE = "meter.json"
LOCK_FILE = "meter.lock"


def read(folder: Path) -> MeterState:
    try:
        data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StateError(
            "not_initialised", f"{folder} holds no meter; run `meter-emulator init` first"
        ) from None
    except ValueError:
        raise StateError("bad_state", "the meter state file is not JSON") from None
    return MeterState.from_json(data)


def write(folder: Path, state: MeterState) -> None:
    """Replace the state file atomically and durably."""
    temporary = folder / f".{STATE_FILE}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(state.to_json(), handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, folder / STATE_FILE)


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the meter's lock (exclusive) for a read-modify-write."""
    if not folder.is_dir():
        raise StateError(
            "not_initialised", f"{folder} holds no meter; run `meter-emulator init` first"
        )
    fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def create(folder: Path, state: MeterState) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    with locked(folder):
        if (folder / STATE_FILE).exists():
            raise StateError("already_initialised", f"{folder} already holds a meter")
        write(folder, state)
