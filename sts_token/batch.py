"""`sts-token batch`: tokens for a file of meters, streamed, in input order, on every core.

Input: CSV (`.csv`) or JSON lines (any other extension), one meter per row; the columns are the
long option names of `sts-token credit` / `key-change` with `_` for `-`:
`vending_key,dkga,ea,sgc,ti,krn,kt,base_date,pan,ken,subclass,amount` (credit) or the key
fields plus `new_vending_key,new_sgc,new_ti,new_krn,new_kt,new_ken,new_base_date,rollover`
(key change), and `rnd`/`tid` when given (else the issue time `--at`). Output, in the same
format: every input row repeated with `tokens` (space-separated) and `error` (reason, empty when
issued). A refused row is also reported on stderr with its line number; the other rows are
still issued.

Resuming: rows already in the output file are skipped and the output is appended to, so an
interrupted run continues where its output stops and no row's tokens are issued twice into the
file (a row in flight when the run died was never written, and is issued on the rerun).
"""

from __future__ import annotations

import csv
import functools
import itertools
import json
import multiprocessing
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from sts_token.amounts import TransferAmount
from sts_token.errors import InvalidValue, TokenError
from sts_token.identifiers import Pan
from sts_token.keys import KeyParameters, VendingKey
from sts_token.kinds import CreditSubclass
from sts_token.one_call import MeterConfig, issue_credit, issue_key_change
from sts_token.tid import Tid

KINDS = ("credit", "key-change")
CHUNK = 256
BLOCK = 8192  # rows in memory at once


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row, streamed."""
    with path.open(newline="") as file:
        if _is_csv(path):
            reader = csv.DictReader(file)
            for row in reader:
                yield reader.line_num, {k: v or "" for k, v in row.items() if k is not None}
            return
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield number, json_row(line)


def json_row(line: str) -> dict[str, str]:
    """One JSON-lines row as batch columns (values as text; `_unparsed` if not an object)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        data = {"_unparsed": line.strip()}
    if not isinstance(data, dict):
        data = {"_unparsed": line.strip()}
    return {k: "" if v is None else str(v) for k, v in data.items()}


def _params(row: dict[str, str], prefix: str = "") -> KeyParameters:
    def field(name: str) -> str:
        value = row.get(prefix + name) or row.get(name, "")
        if not value:
            raise InvalidValue(f"missing column {prefix + name}")
        return value

    return KeyParameters.from_values(
        dkga=field("dkga"),
        ea=field("ea"),
        sgc=field("sgc"),
        ti=field("ti"),
        krn=int(field("krn")),
        kt=int(field("kt")),
        base_date=int(field("base_date")),
        ken=int(row.get(prefix + "ken") or "255"),
    )


def rollover_flag(row: dict[str, str]) -> bool | None:
    """The `rollover` column: empty (the default: the base date changes), true or false."""
    return {"": None, "true": True, "false": False}[row.get("rollover", "").lower()]


def refusal(error: Exception) -> str:
    """The `error` of a refused row: reason and message, tab-separated (a refusal with a
    `reason` and `message`, as `TokenError` and the SM's errors have; else `invalid_value`)."""
    reason, message = getattr(error, "reason", None), getattr(error, "message", None)
    if isinstance(reason, str) and isinstance(message, str):
        return f"{reason}\t{message}"
    return f"invalid_value\t{type(error).__name__}: {error}"


def issue_row(kind: str, at: datetime | None, row: dict[str, str]) -> tuple[str, str]:
    """(tokens space-separated, error reason) for one row."""
    try:
        if "_unparsed" in row:
            raise InvalidValue("the line is not a JSON object")
        meter = MeterConfig(Pan(row.get("pan", "")), _params(row))
        vending = VendingKey.from_hex(row.get("vending_key", ""))
        if kind == "credit":
            issued: datetime | Tid
            if row.get("tid"):
                issued = Tid(int(row["tid"]))
            elif at is not None:
                issued = at
            else:
                raise InvalidValue("no tid column and no --at")
            subclass = CreditSubclass[(row.get("subclass") or "electricity").upper()]
            rnd = int(row["rnd"]) if row.get("rnd") else None
            amount = TransferAmount.from_decimal(row.get("amount", ""))
            tokens: tuple[Any, ...] = (
                issue_credit(vending, meter, subclass, amount, issued, rnd=rnd),
            )
        else:
            tokens = issue_key_change(
                vending,
                meter,
                VendingKey.from_hex(row.get("new_vending_key") or row.get("vending_key", "")),
                _params(row, "new_"),
                rollover=rollover_flag(row),
            )
    except (TokenError, ValueError, KeyError) as error:
        return "", refusal(error)
    return " ".join(t.digits for t in tokens), ""


def answer_line(line: str, at: datetime | None) -> dict[str, Any]:
    """`sts-token --stdin`: one JSON request (a batch row plus `kind`, and `at` for its issue
    time if it has no `tid`) to one JSON answer, `{"tokens": [...]}` or `{"error", "message"}`."""
    row = json_row(line)
    if "_unparsed" in row:
        return {"error": "invalid_value", "message": "the line is not a JSON object"}
    kind = row.pop("kind", "")
    if kind not in KINDS:
        return {"error": "invalid_value", "message": f"'kind' must be one of {', '.join(KINDS)}"}
    if row.get("at"):
        try:
            at = datetime.fromisoformat(row.pop("at"))
        except ValueError:
            return {"error": "invalid_value", "message": "'at' is not YYYY-MM-DDTHH:MM[:SS]"}
    tokens, error = issue_row(kind, at, row)
    if error:
        reason, _, message = error.partition("\t")
        return {"error": reason, "message": message}
    return {"tokens": tokens.split()}


# A row's issuer, (line number, row) -> (tokens, error); set in each worker by the pool.
RowIssuer = Callable[[int, dict[str, str]], tuple[str, str]]
_issuer: RowIssuer | None = None


def _install(issuer: RowIssuer) -> None:
    global _issuer  # one issuer per worker process, set once at its start
    _issuer = issuer


def _work(job: tuple[int, dict[str, str]]) -> tuple[str, str]:
    assert _issuer is not None
    return _issuer(*job)


def _key_issuer(
    kind: str, at: datetime | None, number: int, row: dict[str, str]
) -> tuple[str, str]:
    return issue_row(kind, at, row)


def row_issuer(kind: str, at: datetime | None) -> RowIssuer:
    """`sts-token batch`'s issuer: the vending key and meter from the row itself."""
    return functools.partial(_key_issuer, kind, at)


def already_done(path: Path) -> int:
    """How many rows an earlier run wrote to `path` (0 when it does not exist), after dropping
    the torn last line a run killed in the middle of a write leaves (rows end with a newline;
    a dropped row was never complete, so it is issued again, as a row in flight is)."""
    if not path.exists():
        return 0
    with path.open("rb+") as file:
        content = file.read()
        file.truncate(content.rfind(b"\n") + 1)
    return sum(1 for _ in read_rows(path))


class _Writer:
    def __init__(self, file: TextIO, csv_format: bool, resumed: bool) -> None:
        self.file, self.csv_format, self.resumed = file, csv_format, resumed
        self.csv: csv.DictWriter[str] | None = None

    def write(self, row: dict[str, str]) -> None:
        if not self.csv_format:
            self.file.write(json.dumps(row) + "\n")
            return
        if self.csv is None:
            self.csv = csv.DictWriter(self.file, fieldnames=list(row), extrasaction="ignore")
            if not self.resumed:
                self.csv.writeheader()
        self.csv.writerow(row)


def run(
    kind: str,
    source: Path,
    target: Path,
    at: datetime | None,
    *,
    processes: int | None = None,
    report: TextIO | None = None,
    progress: Any = None,
) -> tuple[int, int]:
    """Issue every row of `source` into `target`; (rows issued, rows refused) this run."""
    return run_with(
        row_issuer(kind, at), source, target, processes=processes, report=report, progress=progress
    )


def run_with(
    issuer: RowIssuer,
    source: Path,
    target: Path,
    *,
    processes: int | None = None,
    report: TextIO | None = None,
    progress: Any = None,
    program: str = "sts-token",
) -> tuple[int, int]:
    """Issue every row of `source` into `target` with `issuer` (a picklable call, run in every
    worker process); (rows issued, rows refused) this run."""
    skip = already_done(target)
    rows = ((n, r) for i, (n, r) in enumerate(read_rows(source)) if i >= skip)
    issued = refused = 0
    with (
        target.open("a" if skip else "w", newline="") as out,
        multiprocessing.get_context("fork").Pool(
            processes, initializer=_install, initargs=(issuer,)
        ) as pool,
    ):
        writer = _Writer(out, _is_csv(target), resumed=skip > 0)
        # Bounded blocks keep memory flat: Pool.imap would read the whole input ahead.
        while block := list(itertools.islice(rows, BLOCK)):
            for (number, row), (tokens, error) in zip(
                block, pool.map(_work, block, chunksize=CHUNK), strict=True
            ):
                reason, _, message = error.partition("\t")
                writer.write({**row, "tokens": tokens, "error": reason})
                if reason:
                    refused += 1
                    if report is not None:
                        report.write(f"{program}: line {number}: {reason}: {message}\n")
                else:
                    issued += 1
            out.flush()
            if progress is not None:
                progress.update(len(block))
    return issued, refused
