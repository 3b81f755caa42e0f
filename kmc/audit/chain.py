"""The audit hash chain itself: canonical encoding, entry hash, and verification of a sequence.

Pure code (no Flask, no database) so an auditor can verify an exported log offline with the same
rules the KMC uses. Each entry hash is SHA-256 over the canonical JSON array

    [seq, time, actor, action, object_type, object_id, details, prev_hash]

encoded as UTF-8 with sorted keys and no insignificant white space; `time` is
`YYYY-MM-DDTHH:MM:SS.ffffffZ`. The first entry's `prev_hash` is GENESIS (64 zeros).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

GENESIS = "0" * 64


# One encoder for every call: building a configured JSONEncoder per call costs more than encoding.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def format_time(at: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` of a UTC time (aware, or naive meaning UTC)."""
    return at.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_json(value: Any) -> str:
    return _CANONICAL.encode(value)


def entry_hash(
    seq: int,
    at: str,
    actor: str,
    action: str,
    object_type: str,
    object_id: str,
    details: str,
    prev_hash: str,
) -> str:
    """`details` is already canonical JSON text (as stored), so it is embedded verbatim."""
    head = canonical_json([seq, at, actor, action, object_type, object_id])
    encoded = f'{head[:-1]},{details},"{prev_hash}"]'
    return hashlib.sha256(encoded.encode()).hexdigest()


@dataclass(frozen=True)
class ChainReport:
    """Outcome of a verification: `first_bad_seq` is None when the chain is intact."""

    entries: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_seq is None


Row = tuple[int, str, str, str, str, str, str, str, str]
ROW_FIELDS = (
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "details",
    "prev_hash",
    "entry_hash",
)
"""The names of a Row's fields, in order (also the keys of an exported entry)."""


def verify_rows(rows: Iterable[Row]) -> ChainReport:
    """Walk rows in sequence order; stop at the first row that breaks the chain."""
    expected_seq = 1
    prev = GENESIS
    count = 0
    for seq, at, actor, action, otype, oid, details, prev_hash, stored in rows:
        if seq != expected_seq:
            return ChainReport(
                count,
                expected_seq - 1,
                prev,
                expected_seq,
                f"missing entry {expected_seq} (next is {seq})",
            )
        if prev_hash != prev:
            return ChainReport(count, seq - 1, prev, seq, "previous-hash link broken")
        if entry_hash(seq, at, actor, action, otype, oid, details, prev_hash) != stored:
            return ChainReport(count, seq - 1, prev, seq, "entry hash does not match its content")
        prev = stored
        expected_seq += 1
        count += 1
    return ChainReport(count, expected_seq - 1, prev)
