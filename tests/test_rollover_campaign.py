"""A TID-rollover campaign through `sts-token batch`: every meter's key change set is issued,
and a random sample of the sets, entered into `meter-emulator` meters made on the old key, is
accepted and leaves each meter on the new key and the next base date (a credit token under the
new key is then accepted too)."""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from meter_emulator.cli import main as meter_main
from sts_token import (
    CreditSubclass,
    KeyParameters,
    MeterConfig,
    Pan,
    TransferAmount,
    VendingKey,
    issue_credit,
)
from sts_token.cli import main as token_main
from sts_token.identifiers import luhn_check_digit

pytestmark = pytest.mark.slow

METERS, SAMPLE = 2000, 12
OLD_KEY, NEW_KEY = bytes(range(20)).hex(), bytes(range(1, 21)).hex()
OLD = {
    "vending_key": OLD_KEY, "dkga": "04", "ea": "11", "sgc": "600100", "ti": "01", "krn": "1",
    "kt": "2", "base_date": "2014", "ken": "255",
}  # fmt: skip
NEW = {
    "new_vending_key": NEW_KEY, "new_sgc": "600100", "new_ti": "01", "new_krn": "2",
    "new_kt": "2", "new_ken": "255", "new_base_date": "2035", "rollover": "true",
}  # fmt: skip


def _pan(n: int) -> str:
    body = f"6007270{n:010d}"
    return body + luhn_check_digit(body)


def _meter(runner: CliRunner, folder: Path, pan: str) -> None:
    result = runner.invoke(
        meter_main,
        ["init", "--state", str(folder), "--pan", pan, "--sgc", "600100", "--ti", "01",
         "--krn", "1", "--kt", "2", "--ken", "255", "--base-date", "2014", "--dkga", "04",
         "--ea", "11", "--vending-key", OLD_KEY, "--manufactured-at", "2030-01-01T00:00"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def _enter(runner: CliRunner, folder: Path, tokens: list[str]) -> dict[str, object]:
    result = runner.invoke(meter_main, ["enter", "--state", str(folder), "--json", *tokens])
    assert result.exit_code == 0, result.output
    answer: dict[str, object] = json.loads(result.output)
    return answer


def test_a_sample_of_a_rollover_campaign_is_accepted_by_meters_on_the_old_key(
    tmp_path: Path,
) -> None:
    source, out = tmp_path / "campaign.csv", tmp_path / "campaign-out.csv"
    with source.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=[*OLD, "pan", *NEW])
        writer.writeheader()
        writer.writerows({**OLD, "pan": _pan(n), **NEW} for n in range(METERS))
    runner = CliRunner()
    result = runner.invoke(
        token_main,
        ["batch", "--kind", "key-change", "--in", str(source), "--out", str(out),
         "--processes", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{METERS} issued, 0 refused" in result.output
    with out.open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["pan"] for r in rows] == [_pan(n) for n in range(METERS)]
    assert all(r["error"] == "" and len(r["tokens"].split()) == 4 for r in rows)

    new_params = KeyParameters.from_values(
        dkga="04", ea="11", sgc="600100", ti=1, krn=2, kt=2, base_date=2035
    )
    accepted = 0
    for row in random.Random(12).sample(rows, SAMPLE):
        folder = tmp_path / row["pan"]
        _meter(runner, folder, row["pan"])
        tokens = row["tokens"].split()
        answer = _enter(runner, folder, tokens[::-1])  # sections may come in any order
        meter = answer["meter"]
        assert isinstance(meter, dict)
        assert (meter["krn"], meter["base_date"], meter["tid_memory"]) == (
            2, 2035, {"oldest": 0, "newest": 0}
        )  # fmt: skip
        credit = issue_credit(
            VendingKey.from_hex(NEW_KEY),
            MeterConfig(Pan(row["pan"]), new_params),
            CreditSubclass.ELECTRICITY,
            TransferAmount.from_decimal("5"),
            datetime(2035, 1, 2, 12, 0),
        )
        after = _enter(runner, folder, [credit.digits])["meter"]
        assert isinstance(after, dict) and after["credit"]["electricity"] == "5.0"
        accepted += 1
    assert accepted == SAMPLE
