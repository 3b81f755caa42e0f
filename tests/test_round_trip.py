"""The round trip through the real command lines: KMC → SM → meter, key rollover, limits.

Runs `kmc`, `sm-emulator` and `meter-emulator` as subprocesses on a fresh `kmc init` instance
(SQLite), exactly as docs/emulator.md walks through it. The EA07 part runs when the EA07 tables
are available ($STS_EA07_TABLES, set by `make test`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sm_emulator.demo import PAN, SGC, Walkthrough, round_trip

pytestmark = pytest.mark.slow


def test_round_trip_credit_rollover_and_refusals(tmp_path: Path) -> None:
    tables = os.environ.get("STS_EA07_TABLES") or None
    results = round_trip(Walkthrough(tmp_path, echo=lambda line: None), tables)
    assert set(results) == ({"EA11", "EA07"} if tables else {"EA11"})
    for result in results.values():
        assert result == {
            "default_key_refusal": result["default_key_refusal"],
            "balance": "38.1",  # 25.6 under KRN 1, 12.5 under KRN 2
            "krn": 2,
            "old_key_refusal": "crc_mismatch",  # a KRN 1 token after the rollover
            "replay_refusal": "tid_used",
        }
        assert result["default_key_refusal"].startswith("sm-emulator: default_key:")


def test_limits_refuse_the_vend_and_write_nothing(tmp_path: Path) -> None:
    walk = Walkthrough(tmp_path, echo=lambda line: None)
    walk.set_up_kmc()
    walk.register_sm()
    walk.run("kmc", "sgc", "add", "--sgc", SGC, "--name", "Limits")
    walk.add_key(
        SGC, 3, 2, "04", "11", "--clm", "30", "--resource-limit", "40", "--iut", "2030-01-01"
    )
    walk.load()

    def registers() -> list[dict[str, object]]:
        keys: list[dict[str, object]] = json.loads(
            walk.run("sm-emulator", "keys", "--state", "sm", "--json").stdout
        )["keys"]
        return keys

    walk.credit(SGC, 3, 2, PAN, "10", "30")
    before = registers()
    refused = walk.credit(SGC, 3, 2, PAN, "1", "0.01", ok=False)
    assert refused.stderr.startswith("sm-emulator: credit_limit:") and refused.stdout == ""
    assert registers() == before
    refused = walk.credit(SGC, 3, 2, PAN, "30.1", "0", ok=False)
    assert refused.stderr.startswith("sm-emulator: resource_limit:")
    assert registers() == before
    walk.credit(SGC, 3, 2, PAN, "30", "0")
    late = {"SM_EMULATOR_FAKE_NOW": "2030-01-01T00:00:00Z"}
    refused = walk.credit(SGC, 3, 2, PAN, "0.1", "0", ok=False, env=late)
    assert refused.stderr.startswith("sm-emulator: key_use_expired:")
    [register] = registers()
    assert register["currency_used"] == "30" and register["units_used"] == "40"
