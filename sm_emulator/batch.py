"""`sm-emulator batch`: `sts-token batch` from the SM's loaded keys, under the SM's rules.

The rows name the meter and the register instead of carrying a vending key: credit
`sgc,krn,kt,pan,ti,ea,subclass,amount,currency`, key change
`sgc,krn,kt,pan,ti,ea,new_sgc,new_krn,new_kt,new_ti,rollover` (`ea` only when the key allows
both; `new_ti` default unchanged; `rollover` default "the base date changes"). Each row is one
vend (`sm_emulator.vending`): TID from the SM's clock and the meter's TID store, CLM and resource
limit counted, everything durable before the row is written. Streaming, worker processes, the
per-line report and resuming are `sts_token.batch`'s.

Resuming never issues a line twice: each vend records its line's tokens in the SM's
`batch_line` journal in the vend's own transaction, keyed by the output file and line number
(with a digest of the row). A line the SM had issued when the run died, but which never reached
the output, is written from the journal on the rerun. A fresh run (no output file yet) forgets
that output file's old journal; a completed run clears it. The workers of a run killed with
`kill -9` (the batch process alone) stop before their next line, and the one line each may
still be vending is journalled once, by whichever of it and the rerun commits first.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any, TextIO

from sm_emulator.clock import from_environment
from sm_emulator.errors import InvalidRequest, SmError, StateUnavailable
from sm_emulator.module import SecurityModule
from sm_emulator.vending import MeterKey, Vending, key_identity, parse_currency
from sts_token import (
    CreditSubclass,
    EncryptionAlgorithm,
    Pan,
    TariffIndex,
    Token,
    TokenError,
    TransferAmount,
)
from sts_token import batch as token_batch

JOURNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_line (
    batch   TEXT NOT NULL,
    line    INTEGER NOT NULL,
    digest  TEXT NOT NULL,
    tokens  TEXT NOT NULL,
    PRIMARY KEY (batch, line)
) WITHOUT ROWID
"""

# One opened SM per worker process (opened there, after the fork), by state folder.
_vendings: dict[str, Vending] = {}


def _vending(state: str, ea07_tables: str | None) -> Vending:
    if state not in _vendings:
        _vendings[state] = Vending(
            SecurityModule(Path(state), clock=from_environment()), ea07_tables=ea07_tables
        )
    return _vendings[state]


def _meter(row: dict[str, str]) -> MeterKey:
    ea = row.get("ea", "")
    return MeterKey(
        key_identity(row.get("sgc", ""), int(row.get("krn", "")), int(row.get("kt", ""))),
        Pan(row.get("pan", "")),
        TariffIndex.parse(row.get("ti", "")),
        EncryptionAlgorithm(ea) if ea else None,
    )


def _vend(vending: Vending, kind: str, row: dict[str, str], record: Any) -> tuple[Token, ...]:
    meter = _meter(row)
    if kind == "credit":
        return vending.credit(
            meter,
            CreditSubclass[(row.get("subclass") or "electricity").upper()],
            TransferAmount.from_decimal(row.get("amount", "")),
            parse_currency(row.get("currency", "")),
            journal=record,
        ).tokens
    new = key_identity(
        row.get("new_sgc", ""), int(row.get("new_krn", "")), int(row.get("new_kt", ""))
    )
    new_ti = TariffIndex.parse(row["new_ti"]) if row.get("new_ti") else None
    return vending.key_change(
        meter, new, new_ti, token_batch.rollover_flag(row), journal=record
    ).tokens


class _Journalled(Exception):
    """The line was journalled by another vend meanwhile: this vend is rolled back."""


def _journalled(vending: Vending, batch: str, number: int, digest: str) -> str | None:
    """The tokens journalled for this line (None if none), refusing a line whose content
    changed since."""
    with vending.sm.store.snapshot() as db:
        found = db.execute(
            "SELECT digest, tokens FROM batch_line WHERE batch = ? AND line = ?",
            (batch, number),
        ).fetchone()
    if found is None:
        return None
    if found["digest"] != digest:
        raise InvalidRequest(
            "batch_line_changed",
            f"line {number} was issued from other content into this output; "
            "start a new output file",
        )
    tokens: str = found["tokens"]
    return tokens


def issue_line(
    state: str,
    kind: str,
    batch: str,
    ea07_tables: str | None,
    parent: int,
    number: int,
    row: dict[str, str],
) -> tuple[str, str]:
    """One row as (tokens space-separated, error): from the journal if this line was issued
    already, else vended now and journalled in the vend's transaction.

    A worker whose batch process (`parent`) has died vends nothing more: it exits, so a rerun
    never races the orphans of a killed run. A line an orphan was vending at that moment is
    journalled by whichever vend commits first; the other is rolled back and answered from
    the journal.
    """
    if os.getppid() != parent:
        raise SystemExit(f"sm-emulator batch: the batch process {parent} has gone")
    digest = hashlib.sha256(json.dumps(row, sort_keys=True).encode()).hexdigest()
    try:
        if "_unparsed" in row:
            raise InvalidRequest("invalid_value", "the line is not a JSON object")
        vending = _vending(state, ea07_tables)
        found = _journalled(vending, batch, number, digest)
        if found is not None:
            return found, ""

        def record(db: sqlite3.Connection, tokens: tuple[Token, ...]) -> None:
            inserted = db.execute(
                "INSERT INTO batch_line (batch, line, digest, tokens) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                (batch, number, digest, " ".join(t.digits for t in tokens)),
            )
            if inserted.rowcount == 0:
                raise _Journalled

        try:
            tokens = " ".join(t.digits for t in _vend(vending, kind, row, record))
        except _Journalled:
            journalled = _journalled(vending, batch, number, digest)
            assert journalled is not None  # committed by the vend this one collided with
            tokens = journalled
    except StateUnavailable:
        raise  # not this line's fault: the run stops here, and a rerun resumes at this line
    except (SmError, TokenError, ValueError, KeyError) as error:
        return "", token_batch.refusal(error)
    return tokens, ""


def _forget(state: Path, batch: str | None) -> None:
    """Make the journal table if this SM has none yet; drop `batch`'s lines when given."""
    sm = SecurityModule(state, clock=from_environment())
    try:
        with sm.store.transaction() as db:
            db.execute(JOURNAL_SCHEMA)
            if batch is not None:
                db.execute("DELETE FROM batch_line WHERE batch = ?", (batch,))
    finally:
        sm.close()


def prepare(state: Path, target: Path) -> None:
    """Open the SM (refusing a missing or foreign state folder) and ready the journal for a
    batch into `target`: forgotten if `target` does not exist yet (a new batch)."""
    _forget(state, None if target.exists() else str(target.resolve()))


def run(
    state: Path,
    kind: str,
    source: Path,
    target: Path,
    *,
    ea07_tables: str | None = None,
    processes: int | None = None,
    report: TextIO | None = None,
    progress: Any = None,
) -> tuple[int, int]:
    """Issue every row of `source` into `target` from the SM at `state`; (rows issued, rows
    refused) this run."""
    batch = str(target.resolve())
    # The parent's SM is closed before the workers fork; each worker opens its own.
    prepare(state, target)
    issuer = functools.partial(
        issue_line, str(state.resolve()), kind, batch, ea07_tables, os.getpid()
    )
    counts = token_batch.run_with(
        issuer,
        source,
        target,
        processes=processes,
        report=report,
        progress=progress,
        program="sm-emulator",
    )
    _forget(state, batch)
    return counts
