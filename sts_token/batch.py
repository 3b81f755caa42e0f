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
file (a row in flight when the run died was never written, and is issued on the rerun; a last
line torn by the kill is cut off first, and its row issued again).

Work is shared out in chunks of rows: the parent process only splits the input into records
and writes back the text the workers return, in input order, a bounded number of chunks ahead
(memory flat in the number of meters). A worker turns its records into rows, issues them (for
`sts-token batch` through `issue_many`, whose batch engine makes a chunk's EA11 tokens in one
pass) and formats the output lines and the refusal report itself.
"""

from __future__ import annotations

import collections
import csv
import functools
import io
import itertools
import json
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from sts_token.amounts import TransferAmount
from sts_token.errors import InvalidValue, TokenError
from sts_token.identifiers import Pan
from sts_token.keys import KeyParameters, VendingKey
from sts_token.kinds import CreditSubclass
from sts_token.one_call import CreditRequest, KeyChangeRequest, MeterConfig, Request, issue_many
from sts_token.tid import Tid

KINDS = ("credit", "key-change")
CHUNK = 512  # rows per worker job
AHEAD = 4  # jobs in flight per worker process

# A CSV record is its fields; a JSON-lines record is its line.
Record = list[str] | str


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


class _Source:
    """A batch file's records with their line numbers, streamed; `header` for CSV (None for
    JSON lines or an empty CSV file)."""

    def __init__(self, file: TextIO, csv_format: bool) -> None:
        self.header: list[str] | None = None
        self.records: Iterator[tuple[int, Record]]
        if csv_format:
            reader = csv.reader(file)
            self.header = next(reader, None)
            # As csv.DictReader: an empty row is no data row.
            self.records = ((reader.line_num, fields) for fields in reader if fields)
        else:
            self.records = (
                (number, line) for number, line in enumerate(file, start=1) if line.strip()
            )


def _row(header: list[str] | None, record: Record) -> dict[str, str]:
    """A record as batch columns, exactly as csv.DictReader / `json_row` give it."""
    if isinstance(record, str):
        return json_row(record)
    assert header is not None
    row = dict(zip(header, record, strict=False))  # extra fields are dropped
    for name in header[len(record) :]:
        row[name] = ""  # a short row: the missing columns are empty
    return row


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data row, streamed."""
    with path.open(newline="") as file:
        source = _Source(file, _is_csv(path))
        for number, record in source.records:
            yield number, _row(source.header, record)


def count_rows(path: Path) -> int:
    """How many data rows `path` holds (0 when it does not exist)."""
    if not path.exists():
        return 0
    with path.open(newline="") as file:
        return sum(1 for _ in _Source(file, _is_csv(path)).records)


def written_rows(path: Path) -> int:
    """How many rows an earlier run wrote to `path`, after dropping the torn last line a run
    killed in the middle of a write leaves (rows end with a newline; a dropped row was never
    complete, so it is issued again, as a row in flight is)."""
    if not path.exists():
        return 0
    with path.open("rb+") as file:
        file.truncate(_whole_lines_end(file))
    return count_rows(path)


def _whole_lines_end(file: BinaryIO, step: int = 1 << 16) -> int:
    """Where the file's last newline ends (0 if it has none), read backwards from the end a
    block at a time, so an output of a million rows is not read into memory to find it."""
    end = file.seek(0, io.SEEK_END)
    while end > 0:
        start = max(0, end - step)
        file.seek(start)
        found = file.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def json_row(line: str) -> dict[str, str]:
    """One JSON-lines row as batch columns (values as text; `_unparsed` if not an object)."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError:
        data = {"_unparsed": line.strip()}
    if not isinstance(data, dict):
        data = {"_unparsed": line.strip()}
    return {k: "" if v is None else str(v) for k, v in data.items()}


@functools.lru_cache(maxsize=256)
def _key_parameters(
    dkga: str, ea: str, sgc: str, ti: str, krn: str, kt: str, base_date: str, ken: str
) -> KeyParameters:
    """Parsed once per distinct set of values (a batch repeats them on every row)."""
    return KeyParameters.from_values(
        dkga=dkga, ea=ea, sgc=sgc, ti=ti, krn=int(krn), kt=int(kt), base_date=int(base_date),
        ken=int(ken),
    )  # fmt: skip


@functools.lru_cache(maxsize=256)
def _vending_key(text: str) -> VendingKey:
    return VendingKey.from_hex(text)


@functools.lru_cache(maxsize=1024)
def _amount(text: str) -> TransferAmount:
    return TransferAmount.from_decimal(text)


def _params(row: dict[str, str], prefix: str = "") -> KeyParameters:
    def field(name: str) -> str:
        value = row.get(prefix + name) or row.get(name, "")
        if not value:
            raise InvalidValue(f"missing column {prefix + name}")
        return value

    names = ("dkga", "ea", "sgc", "ti", "krn", "kt", "base_date")
    return _key_parameters(*(field(name) for name in names), row.get(prefix + "ken") or "255")


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


def row_request(kind: str, at: datetime | None, row: dict[str, str]) -> Request:
    """The one-call request a row stands for (raises what refuses the row)."""
    if "_unparsed" in row:
        raise InvalidValue("the line is not a JSON object")
    meter = MeterConfig(Pan(row.get("pan", "")), _params(row))
    vending = _vending_key(row.get("vending_key", ""))
    if kind == "credit":
        issued: datetime | Tid
        if row.get("tid"):
            issued = Tid(int(row["tid"]))
        elif at is not None:
            issued = at
        else:
            raise InvalidValue("no tid column and no --at")
        return CreditRequest(
            vending,
            meter,
            CreditSubclass[(row.get("subclass") or "electricity").upper()],
            _amount(row.get("amount", "")),
            issued,
            int(row["rnd"]) if row.get("rnd") else None,
        )
    return KeyChangeRequest(
        vending,
        meter,
        _vending_key(row.get("new_vending_key") or row.get("vending_key", "")),
        _params(row, "new_"),
        rollover_flag(row),
    )


def issue_rows(
    kind: str, at: datetime | None, rows: Sequence[dict[str, str]]
) -> list[tuple[str, str]]:
    """(tokens space-separated, error) for each row, in order; the rows' tokens come from one
    `issue_many` call."""
    answers: list[tuple[str, str] | None] = []
    requests: list[Request] = []
    for row in rows:
        try:
            requests.append(row_request(kind, at, row))
        except (TokenError, ValueError, KeyError) as error:
            answers.append(("", refusal(error)))
        else:
            answers.append(None)
    outcomes = issue_many(requests)
    results = []
    for answer in answers:
        if answer is None:
            outcome = next(outcomes)
            reason = f"{outcome.error}\t{outcome.message}" if outcome.error else ""
            answer = (" ".join(t.digits for t in outcome.tokens), reason)
        results.append(answer)
    return results


def issue_row(kind: str, at: datetime | None, row: dict[str, str]) -> tuple[str, str]:
    """(tokens space-separated, error reason) for one row."""
    return issue_rows(kind, at, [row])[0]


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


# A row's issuer, (line number, row) -> (tokens, error), and a chunk's, [(line number, row)]
# -> [(tokens, error)]; the pool sets one in each worker process.
RowIssuer = Callable[[int, dict[str, str]], tuple[str, str]]
ChunkIssuer = Callable[[list[tuple[int, dict[str, str]]]], list[tuple[str, str]]]
_issuer: ChunkIssuer | None = None


def _install(issuer: ChunkIssuer) -> None:
    global _issuer  # one issuer per worker process, set once at its start
    _issuer = issuer


# A job: the output columns (None for JSON lines out), the input header and the records.
_Job = tuple[list[str] | None, list[str] | None, list[tuple[int, Record]]]
# Its result: the output text, and the refusals as (line number, reason, message).
_Done = tuple[str, list[tuple[int, str, str]]]


def _work(job: _Job) -> _Done:
    assert _issuer is not None
    columns, header, records = job
    rows = [(number, _row(header, record)) for number, record in records]
    text = io.StringIO()
    writer = None if columns is None else csv.DictWriter(text, columns, extrasaction="ignore")
    refusals = []
    for (number, row), (tokens, error) in zip(rows, _issuer(rows), strict=True):
        reason, _, message = error.partition("\t")
        out = {**row, "tokens": tokens, "error": reason}
        if writer is None:
            text.write(json.dumps(out) + "\n")
        else:
            writer.writerow(out)
        if reason:
            refusals.append((number, reason, message))
    return text.getvalue(), refusals


def _each_row(issuer: RowIssuer, rows: list[tuple[int, dict[str, str]]]) -> list[tuple[str, str]]:
    return [issuer(number, row) for number, row in rows]


def _kind_rows(
    kind: str, at: datetime | None, rows: list[tuple[int, dict[str, str]]]
) -> list[tuple[str, str]]:
    return issue_rows(kind, at, [row for _, row in rows])


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
    return _run(
        functools.partial(_kind_rows, kind, at),
        source,
        target,
        processes=processes,
        report=report,
        progress=progress,
        program="sts-token",
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
    return _run(
        functools.partial(_each_row, issuer),
        source,
        target,
        processes=processes,
        report=report,
        progress=progress,
        program=program,
    )


def _columns(header: list[str] | None, first: Record) -> list[str]:
    """The output columns: the (first) row's, then `tokens` and `error`."""
    return list({**_row(header, first), "tokens": "", "error": ""})


def _run(
    issuer: ChunkIssuer,
    source: Path,
    target: Path,
    *,
    processes: int | None,
    report: TextIO | None,
    progress: Any,
    program: str,
) -> tuple[int, int]:
    skip = written_rows(target)  # rows an earlier run wrote: resume after them
    with (
        source.open(newline="") as file,
        target.open("a" if skip else "w", newline="") as out,
        multiprocessing.get_context("fork").Pool(
            processes, initializer=_install, initargs=(issuer,)
        ) as pool,
    ):
        records = _Source(file, _is_csv(source))
        pending = itertools.islice(records.records, skip, None)
        first = next(pending, None)
        if first is None:
            return 0, 0
        columns = _columns(records.header, first[1]) if _is_csv(target) else None
        if columns is not None and not skip:
            out.write(_header_line(columns))
        counts = [0, 0]  # issued, refused

        def write(done: _Done, size: int) -> None:
            text, refusals = done
            out.write(text)
            out.flush()
            counts[0] += size - len(refusals)
            counts[1] += len(refusals)
            if report is not None:
                for number, reason, message in refusals:
                    report.write(f"{program}: line {number}: {reason}: {message}\n")
            if progress is not None:
                progress.update(size)

        # Results are written in input order with a bounded number of jobs in flight.
        window: collections.deque[tuple[int, AsyncResult[_Done]]] = collections.deque()
        ahead = AHEAD * (processes or multiprocessing.cpu_count())
        for chunk in _chunks(itertools.chain([first], pending)):
            job = (columns, records.header, chunk)
            window.append((len(chunk), pool.apply_async(_work, (job,))))
            if len(window) > ahead:
                size, result = window.popleft()
                write(result.get(), size)
        while window:
            size, result = window.popleft()
            write(result.get(), size)
    return counts[0], counts[1]


def _chunks(records: Iterator[tuple[int, Record]]) -> Iterator[list[tuple[int, Record]]]:
    while chunk := list(itertools.islice(records, CHUNK)):
        yield chunk


def _header_line(columns: list[str]) -> str:
    text = io.StringIO()
    csv.writer(text).writerow(columns)
    return text.getvalue()
