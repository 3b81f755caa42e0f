"""`sts-token batch`: CSV and JSON lines in, every row out in order with `tokens` and `error`,
refused lines reported with their numbers, and a resumed run issuing only the rows not yet out."""

from __future__ import annotations

import csv
import json
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from sts_token import (
    CreditSubclass,
    KeyParameters,
    MeterConfig,
    Pan,
    TransferAmount,
    VendingKey,
    batch,
    issue_credit,
)
from sts_token.cli import main

KEY = bytes(range(20)).hex()
ROW = {
    "vending_key": KEY, "dkga": "04", "ea": "11", "sgc": "600100", "ti": "01", "krn": "1",
    "kt": "2", "base_date": "2014", "pan": "600727000000000009", "ken": "255",
    "subclass": "electricity", "amount": "12.5", "rnd": "3",
}  # fmt: skip
ROWS = [ROW, {**ROW, "pan": "600727000000000008"}, {**ROW, "amount": "20"}]
AT = "2030-03-01T12:00"


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _expected(row: dict[str, str]) -> str:
    params = KeyParameters.from_values(
        dkga="04", ea="11", sgc="600100", ti=1, krn=1, kt=2, base_date=2014
    )
    token = issue_credit(
        VendingKey(bytes(range(20))),
        MeterConfig(Pan(row["pan"]), params),
        CreditSubclass.ELECTRICITY,
        TransferAmount.from_decimal(row["amount"]),
        datetime.fromisoformat(AT),
        rnd=3,
    )
    return token.digits


def _batch(*args: str) -> object:
    return CliRunner().invoke(main, ["batch", *args, "--processes", "2"])


def test_csv_rows_come_back_in_order_with_tokens_and_refusals(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", ROWS)
    out = tmp_path / "out.csv"
    result = _batch("--kind", "credit", "--in", str(source), "--out", str(out), "--at", AT)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    rows = _read_csv(out)
    assert [r["pan"] for r in rows] == [r["pan"] for r in ROWS]
    assert rows[0]["tokens"] == _expected(ROW) and rows[0]["error"] == ""
    assert rows[1]["tokens"] == "" and rows[1]["error"] == "invalid_pan"
    assert rows[2]["tokens"] == _expected(ROWS[2])
    assert "line 3: invalid_pan" in result.output  # type: ignore[attr-defined]
    assert "2 issued, 1 refused" in result.output  # type: ignore[attr-defined]


def test_a_resumed_run_issues_only_the_rows_not_yet_written(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", ROWS)
    out = tmp_path / "out.csv"
    _batch("--kind", "credit", "--in", str(source), "--out", str(out), "--at", AT)
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:2]))  # the run "died" after its first row
    first = _read_csv(out)[0]
    result = _batch("--kind", "credit", "--in", str(source), "--out", str(out), "--at", AT)
    assert "1 issued, 1 refused" in result.output  # type: ignore[attr-defined]
    rows = _read_csv(out)
    assert len(rows) == 3 and rows[0] == first
    assert rows[2]["tokens"] == _expected(ROWS[2])


def test_a_run_killed_mid_line_resumes_from_its_last_whole_row(tmp_path: Path) -> None:
    source = _write_csv(tmp_path / "in.csv", ROWS)
    out = tmp_path / "out.csv"
    _batch("--kind", "credit", "--in", str(source), "--out", str(out), "--at", AT)
    complete = out.read_text()
    out.write_text(complete[: complete.index(_expected(ROWS[2])) + 5])  # torn in row 3's token
    result = _batch("--kind", "credit", "--in", str(source), "--out", str(out), "--at", AT)
    assert "1 issued, 0 refused" in result.output  # type: ignore[attr-defined]
    assert out.read_text() == complete


def test_a_large_output_torn_in_its_last_row_counts_only_its_whole_rows(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    rows = [json.dumps({"pan": f"{n:018d}", "tokens": "1" * 20, "error": ""}) for n in range(5000)]
    whole = "".join(row + "\n" for row in rows)  # several 64 KiB blocks
    out.write_text(whole + rows[0][:30])
    assert batch.written_rows(out) == 5000
    assert out.read_text() == whole
    out.write_text('{"pan": "6007')  # a run killed inside its first row
    assert batch.written_rows(out) == 0
    assert out.read_text() == ""


def test_key_change_sets_from_json_lines(tmp_path: Path) -> None:
    change = {
        **{k: ROW[k] for k in ("vending_key", "dkga", "ea", "sgc", "ti", "krn", "kt", "base_date", "pan")},
        "new_vending_key": bytes(range(1, 21)).hex(), "new_sgc": "600100", "new_ti": "01",
        "new_krn": 2, "new_kt": 2, "new_ken": 255, "new_base_date": 2014,
    }  # fmt: skip
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(change) + "\nnot json\n")
    out = tmp_path / "out.jsonl"
    result = _batch("--kind", "key-change", "--in", str(source), "--out", str(out))
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    first, second = (json.loads(line) for line in out.read_text().splitlines())
    assert len(first["tokens"].split()) == 4 and first["error"] == ""
    assert second["error"] == "invalid_value"
    assert "line 2: invalid_value" in result.output  # type: ignore[attr-defined]


def test_rows_over_many_chunks_come_back_in_input_order_as_issued_one_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "CHUNK", 2)  # 5 chunks of jobs, at most 2 in flight
    monkeypatch.setattr(batch, "AHEAD", 1)
    rows = [{**ROW, "amount": str(n + 1), "rnd": str(n % 16)} for n in range(9)]
    rows[4] = {**rows[4], "pan": "600727000000000008"}
    source = _write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.csv"
    result = _batch("--kind", "credit", "--in", str(source), "--out", str(out), "--at", AT)
    assert "8 issued, 1 refused" in result.output  # type: ignore[attr-defined]
    alone = [batch.issue_row("credit", datetime.fromisoformat(AT), row) for row in rows]
    assert [(r["tokens"], r["error"]) for r in _read_csv(out)] == [
        (tokens, error.partition("\t")[0]) for tokens, error in alone
    ]
