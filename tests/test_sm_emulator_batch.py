"""`sm-emulator batch`: tokens for a file of meters from the SM's loaded keys, under its rules
(TIDs from the meter's TID store, CLM counted, refusals per line), accepted by meters; a rerun
after a run died between a vend and its output line writes the journalled tokens, never a
second vend."""

from __future__ import annotations

import csv
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories.emulator import NOW, MiniKmc, loaded_key, ready_sm
from meter_emulator import meter
from sm_emulator import batch
from sm_emulator.cli import main
from sm_emulator.module import SecurityModule
from sts_token import (
    KeyParameters,
    Pan,
    TokenKey,
    VendingKey,
    decode_token,
    derive_decoder_key,
)
from sts_token import batch as token_batch
from sts_token.identifiers import luhn_check_digit

OLD, NEW = bytes(range(20)), bytes(range(1, 21))
SGC = "123457"
ENV = {"SM_EMULATOR_FAKE_NOW": NOW.isoformat()}


def _pan(n: int) -> str:
    body = f"6007270{n:010d}"
    return body + luhn_check_digit(body)


def _sm(tmp_path: Path) -> Path:
    kmc = MiniKmc()
    sm = ready_sm(tmp_path / "sm", kmc)
    keys = (
        loaded_key(SGC, 1, 2, key_value=OLD, clm=Decimal("100")),
        loaded_key(SGC, 2, 2, key_value=NEW, base_date=2035),
    )
    sm.load(kmc.answer(sm.request(None), keys))
    sm.close()
    return tmp_path / "sm"


def _write(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _run(state: Path, kind: str, source: Path, out: Path) -> object:
    args = ["batch", "--state", str(state), "--kind", kind, "--in", str(source)]
    return CliRunner().invoke(main, [*args, "--out", str(out), "--processes", "2"], env=ENV)


def _meter(pan: str) -> meter.MeterState:
    params = KeyParameters.from_values(
        dkga="04", ea="11", sgc=SGC, ti=1, krn=1, kt=2, base_date=2014
    )
    return meter.manufactured(
        pan=pan, sgc=SGC, ti=1, krn=1, kt=2, ken=255, base_date=params.base_date, dkga="04",
        decoder_key=derive_decoder_key(VendingKey(OLD), Pan(pan), params), manufacture_tid=0,
    )  # fmt: skip


def _credit(pan: str, currency: str = "40") -> dict[str, str]:
    return {
        "sgc": SGC, "krn": "1", "kt": "2", "pan": pan, "ti": "01", "ea": "",
        "subclass": "electricity", "amount": "12.5", "currency": currency,
    }  # fmt: skip


def _used(state: Path) -> Decimal:
    sm = SecurityModule(state, clock=lambda: NOW)
    try:
        [register] = [r for r in sm.registers() if r.identity.krn == 1]
        return register.currency_used
    finally:
        sm.close()


def test_credit_rows_are_vended_in_order_and_refused_per_line(tmp_path: Path) -> None:
    state = _sm(tmp_path)
    rows = [
        _credit(_pan(1)), _credit("600727000000000001"), _credit(_pan(1)), _credit(_pan(2)),
    ]  # fmt: skip
    out = tmp_path / "out.csv"
    result = _run(state, "credit", _write(tmp_path / "in.csv", rows), out)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    written = _read(out)
    assert [r["pan"] for r in written] == [r["pan"] for r in rows]
    assert [r["error"] for r in written] == ["", "invalid_pan", "", "credit_limit"]
    assert "line 3: invalid_pan" in result.output  # type: ignore[attr-defined]
    assert "line 5: credit_limit" in result.output  # type: ignore[attr-defined]
    assert "2 issued, 2 refused" in result.output  # type: ignore[attr-defined]
    assert _used(state) == Decimal("80")
    state_1 = _meter(_pan(1))
    for row in (written[0], written[2]):  # two tokens for one meter in one minute: two TIDs
        state_1 = meter.enter(state_1, row["tokens"]).state
    assert state_1.credit_tenths["electricity"] == 250


def test_a_rollover_campaign_moves_meters_to_the_new_key(tmp_path: Path) -> None:
    state = _sm(tmp_path)
    change = {"new_sgc": SGC, "new_krn": "2", "new_kt": "2", "new_ti": "", "rollover": ""}
    rows = [{**_credit(_pan(n)), **change} for n in range(1, 4)]
    out = tmp_path / "out.jsonl"
    result = _run(state, "key-change", _write(tmp_path / "in.csv", rows), out)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert "3 issued, 0 refused" in result.output  # type: ignore[attr-defined]
    for row in out.read_text().splitlines():
        written = batch.token_batch.json_row(row)
        current = _meter(written["pan"])
        for token in written["tokens"].split():
            current = meter.enter(current, token).state
        assert (current.krn, current.base_date) == (2, 2035)


def test_a_rerun_writes_a_line_vended_before_the_crash_without_vending_it_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _sm(tmp_path)
    source, out = tmp_path / "in.csv", tmp_path / "out.csv"
    first = [_credit(_pan(1), "10"), _credit(_pan(2), "10")]
    _run(state, "credit", _write(source, first), out)
    rows = [*first, _credit(_pan(3), "10"), _credit(_pan(4), "10")]
    _write(source, rows)
    # The run died after the SM vended line 4 (the third row) and before it reached the output.
    monkeypatch.setenv("SM_EMULATOR_FAKE_NOW", NOW.isoformat())
    tokens, error = batch.issue_line(
        str(state.resolve()), "credit", str(out.resolve()), None, os.getppid(), 4, rows[2]
    )
    assert error == "" and _used(state) == Decimal("30")
    result = _run(state, "credit", source, out)
    assert "2 issued, 0 refused" in result.output  # type: ignore[attr-defined]
    written = _read(out)
    assert [r["pan"] for r in written] == [r["pan"] for r in rows]
    assert written[2]["tokens"] == tokens
    assert _used(state) == Decimal("40")  # line 4 counted once


def test_a_key_not_loaded_is_refused_per_line_and_a_missing_state_in_one_line(
    tmp_path: Path,
) -> None:
    state = _sm(tmp_path)
    rows = [{**_credit(_pan(1)), "krn": "9"}, _credit(_pan(2))]
    source, out = _write(tmp_path / "in.csv", rows), tmp_path / "out.csv"
    result = _run(state, "credit", source, out)
    assert [r["error"] for r in _read(out)] == ["no_such_key", ""]
    assert "line 2: no_such_key" in result.output  # type: ignore[attr-defined]
    missing = _run(tmp_path / "nowhere", "credit", source, tmp_path / "other.csv")
    assert missing.exit_code == 1  # type: ignore[attr-defined]
    assert missing.output.startswith("sm-emulator: not_initialised:")  # type: ignore[attr-defined]
    assert not (tmp_path / "other.csv").exists()


def _batch_command(state: Path, source: Path, out: Path) -> list[str]:
    """The real `sm-emulator batch` command line crediting `source` into `out`."""
    args = [str(Path(sys.executable).parent / "sm-emulator"), "batch", "--state", str(state)]
    return args + ["--kind", "credit", "--in", str(source), "--out", str(out), "--processes", "2"]


def _batch_process(state: Path, source: Path, out: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as stderr:
        return subprocess.Popen(
            _batch_command(state, source, out),
            env={**os.environ, **ENV},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def test_a_state_that_cannot_be_written_stops_the_batch_and_a_rerun_resumes(
    tmp_path: Path,
) -> None:
    """A real write fault (the batch may not grow a file: RLIMIT_FSIZE, as a full disk would
    fail it) stops the run at the line it hit, in one line, with no line refused for it."""
    state = _sm(tmp_path)
    rows = [_credit(_pan(n), "1") for n in range(6)]
    source, out = _write(tmp_path / "in.csv", rows), tmp_path / "out.csv"
    holder = sqlite3.connect(state / "state.db")  # keeps the WAL from being checkpointed away
    try:
        holder.execute("SELECT count(*) FROM key_register").fetchone()
        assert _run(state, "credit", _write(tmp_path / "warm.csv", rows[:1]), tmp_path / "w.csv")
        limit = (state / "state.db-wal").stat().st_size
        used = _used(state)
        failed = subprocess.run(
            _batch_command(state, source, out),
            env={**os.environ, **ENV},
            capture_output=True,
            text=True,
            preexec_fn=lambda: resource.setrlimit(
                resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY)
            ),
        )
    finally:
        holder.close()
    assert failed.returncode != 0
    [line] = failed.stderr.strip().splitlines()[-1:]
    assert line.startswith("sm-emulator: state_unavailable: ") and "disk I/O error" in line
    assert "Traceback" not in failed.stderr
    assert _used(state) == used
    assert all(r["error"] == "" for r in (_read(out) if out.exists() else []))

    assert _run(state, "credit", source, out).exit_code == 0  # type: ignore[attr-defined]
    written = _read(out)
    assert [r["pan"] for r in written] == [r["pan"] for r in rows]
    assert {r["error"] for r in written} == {""}
    assert _used(state) == used + len(rows)


def _journalled(state: Path) -> int:
    db = sqlite3.connect(state / "state.db", timeout=60)
    try:
        return int(db.execute("SELECT count(*) FROM batch_line").fetchone()[0])
    except sqlite3.OperationalError:  # the batch has not made its journal table yet
        return 0
    finally:
        db.close()


@pytest.mark.slow
def test_kill_9_mid_batch_then_resume_issues_every_line_once_in_order(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm = ready_sm(tmp_path / "sm", kmc)
    sm.load(kmc.answer(sm.request(None), (loaded_key(SGC, key_value=OLD, clm=Decimal(10**6)),)))
    sm.close()
    state = tmp_path / "sm"
    # More rows than the jobs in flight (2 processes), so the kill finds some rows written and
    # some vended but not written; 300 meters, each with many tokens in the same minute.
    in_flight = token_batch.CHUNK * token_batch.AHEAD * 2
    rows = [_credit(_pan(n % 300), "1") for n in range(2 * in_flight + 1500)]
    source, out = _write(tmp_path / "in.csv", rows), tmp_path / "out.csv"
    process = _batch_process(state, source, out, tmp_path / "first.log")
    deadline = time.monotonic() + 600
    while _journalled(state) < in_flight + 200 and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)  # the batch process only, as `kill -9 PID` does
    assert process.wait(timeout=60) == -signal.SIGKILL, "the batch ended before the kill"
    written_before = len(_read(out))
    assert 0 < written_before < len(rows)

    resumed = _batch_process(state, source, out, tmp_path / "resumed.log")
    assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()

    written = _read(out)
    assert [r["pan"] for r in written] == [r["pan"] for r in rows]
    assert {r["error"] for r in written} == {""}
    db = sqlite3.connect(state / "state.db")
    try:
        stored = set(db.execute("SELECT pan, tid FROM issued_tid"))
        currency, tokens = db.execute(
            "SELECT currency_used, tokens_issued FROM key_register"
        ).fetchone()
        journal_left = db.execute("SELECT count(*) FROM batch_line").fetchone()[0]
    finally:
        db.close()
    # Every line vended exactly once: one TID and one unit of currency per row, no more.
    assert (len(stored), Decimal(currency), tokens) == (len(rows), Decimal(len(rows)), len(rows))
    assert journal_left == 0
    params = KeyParameters.from_values(
        dkga="04", ea="11", sgc=SGC, ti=1, krn=1, kt=2, base_date=2014
    )
    tids = []
    for row in written:
        key = TokenKey(
            derive_decoder_key(VendingKey(OLD), Pan(row["pan"]), params), params.base_date
        )
        tids.append((row["pan"], decode_token(row["tokens"], key).tid.value))
    assert len(set(tids)) == len(rows), "a meter got two tokens with one TID"
    assert set(tids) == stored
