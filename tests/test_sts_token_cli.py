"""The ``sts-token`` command: option forms, JSON output, and one-line failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sts_token.cli import main
from tests.conftest import require_shared_sts

SHARED = require_shared_sts()
TABLES = str(SHARED / "ea07_tables.json")

EA07_KEY = [
    "--vending-key", "abababababababab", "--dkga", "02", "--ea", "07", "--sgc", "123456",
    "--ti", "01", "--krn", "1", "--kt", "2", "--base-date", "1993", "--pan", "600727000000000009",
]  # fmt: skip
EA11_KEY = [
    "--vending-key", "abababababababab949494949494949401234567", "--dkga", "04", "--ea", "11",
    "--sgc", "123457", "--ti", "1", "--krn", "1", "--kt", "2", "--base-date", "1993",
    "--pan", "600727000000000009",
]  # fmt: skip


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


@pytest.fixture(autouse=True)
def _no_ambient_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STS_EA07_TABLES", raising=False)


def test_credit_with_issue_time_matches_worked_example() -> None:
    result = run(
        "credit", *EA07_KEY, "--ea07-tables", TABLES, "--ken", "255", "--subclass", "electricity",
        "--amount", "0.1", "--at", "2004-03-01T13:55", "--rnd", "5",
    )  # fmt: skip
    assert result.output.strip() == "23716100501183194197"


def test_ea07_tables_fall_back_to_the_environment() -> None:
    result = run(
        "credit", *EA07_KEY, "--subclass", "electricity", "--amount", "0.1",
        "--at", "2004-03-01T13:55:59", "--rnd", "5", env={"STS_EA07_TABLES": TABLES},
    )  # fmt: skip
    assert result.output.strip() == "23716100501183194197"


def test_ea07_without_tables_fails_with_a_clear_one_line_reason() -> None:
    result = run(
        "credit", *EA07_KEY, "--subclass", "gas", "--amount", "1", "--at", "2004-03-01T13:55"
    )
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith("sts-token: ea07_tables_missing: EA07 needs the licensed")


def test_ea11_works_without_ea07_tables() -> None:
    result = run(
        "credit", *EA11_KEY, "--subclass", "electricity", "--amount", "0.1",
        "--at", "2004-03-01T13:00", "--rnd", "5",
    )  # fmt: skip
    assert result.output.strip() == "59386323472137426967"


def test_decoder_key_option_replaces_vending_key_options() -> None:
    result = run(
        "credit", "--decoder-key", "f94b6ed353c3bfdb113e2d3a7ea3c41d", "--base-date", "1993",
        "--subclass", "electricity", "--amount", "0.1", "--tid", "5871660", "--rnd", "5",
    )  # fmt: skip
    assert result.output.strip() == "59386323472137426967"


def test_json_output_reports_the_fields_the_token_carries() -> None:
    result = run(
        "credit", *EA11_KEY, "--subclass", "water", "--amount", "1638.5",
        "--at", "2004-03-01T13:00", "--json",
    )  # fmt: skip
    fields = json.loads(result.output)
    assert fields["transfer_amount"] == 16394
    assert fields["amount"] == "1639.4"
    assert fields["kind"] == "water"
    assert 0 <= fields["rnd"] <= 15
    decoded = json.loads(run("decode", fields["token"], *EA11_KEY, "--json").output)
    assert decoded["tid"] == fields["tid"] == 5871660


def test_meter_test_control_accepts_hex() -> None:
    result = run("test", "--subclass", "0", "--control", "0xFFFFFFFFF", "--manufacturer-code", "00")
    assert result.output.strip() == "56493153725450313471"


def test_decode_of_meter_test_token_ignores_key_options_and_needs_no_tables() -> None:
    result = run("decode", "56493153725450313471", *EA07_KEY, "--json")
    assert json.loads(result.output)["control"] == (1 << 36) - 1


def test_meter_test_code_width_must_match_subclass() -> None:
    result = run("test", "--subclass", "1", "--control", "1", "--manufacturer-code", "07")
    assert result.exit_code == 1
    assert "needs a 4-digit manufacturer code" in result.output


def test_decode_of_mistyped_token_reports_crc_mismatch() -> None:
    result = run("decode", "23716100501183194198", *EA07_KEY, "--ea07-tables", TABLES)
    assert result.exit_code == 1
    assert result.output.startswith("sts-token: crc_mismatch:")


def test_decode_with_the_wrong_key_reports_crc_mismatch() -> None:
    other_ti = [*EA11_KEY[:-2], "--ti", "02", *EA11_KEY[-2:]]
    result = run("decode", "59386323472137426967", *other_ti)
    assert result.output.startswith("sts-token: crc_mismatch:")


def test_decode_of_credit_token_without_key_asks_for_one() -> None:
    result = run("decode", "59386323472137426967")
    assert result.output.startswith("sts-token: key_required:")


def test_issue_time_before_base_date_is_refused() -> None:
    result = run(
        "credit", *EA11_KEY, "--subclass", "gas", "--amount", "1", "--at", "1992-12-31T23:59"
    )
    assert result.output == "sts-token: tid_out_of_range: issue time 1992-12-31 23:59 is before " \
        "the base date 1993\n"  # fmt: skip


def test_pan_with_bad_check_digit_is_refused() -> None:
    result = run("decoder-key", *EA11_KEY[:-1], "600727000000000001")
    assert result.exit_code == 1
    assert result.output.startswith("sts-token: invalid_pan: PAN check digit is 1")


def test_missing_key_option_is_a_one_line_usage_error() -> None:
    result = run("decoder-key", *EA11_KEY[:-2])
    assert result.exit_code == 2
    assert result.output == "sts-token: usage: missing --pan\n"


def test_management_power_limit_in_watts() -> None:
    result = run(
        "management", *EA07_KEY, "--ea07-tables", TABLES, "--kind", "set-max-power-limit",
        "--value", "1000", "--at", "2004-03-28T09:01", "--rnd", "5",
    )  # fmt: skip
    assert result.output.strip() == "50901894209860263092"


def test_clear_credit_defaults_to_all_registers() -> None:
    result = run(
        "management", *EA07_KEY, "--ea07-tables", TABLES, "--kind", "clear-credit",
        "--at", "2004-03-28T09:15", "--rnd", "5",
    )  # fmt: skip
    assert result.output.strip() == "29511990995826640868"


def test_power_limit_without_value_is_a_usage_error() -> None:
    result = run(
        "management", *EA11_KEY, "--kind", "set-max-power-limit", "--at", "2004-03-28T09:01"
    )
    assert result.output == "sts-token: usage: --kind set-max-power-limit needs --value\n"


def test_key_change_rollover_defaults_to_base_date_change() -> None:
    args = [
        "key-change", *EA11_KEY, "--new-vending-key", "abababababababab949494949494949401234567",
        "--new-sgc", "123457", "--new-ti", "01", "--new-krn", "2", "--new-kt", "2",
        "--new-ken", "133", "--new-base-date", "2014", "--json",
    ]  # fmt: skip
    sections = json.loads(run(*args).output)
    assert [s["subclass"] for s in sections] == [3, 4, 8, 9]
    assert sections[0]["rollover"] is True
    assert (sections[0]["ken_nibble"], sections[1]["ken_nibble"]) == (8, 5)


def test_installed_console_script_exits_non_zero_without_traceback() -> None:
    script = Path(sys.executable).with_name("sts-token")
    result = subprocess.run(
        [str(script), "decode", "123"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert result.stderr == (
        "sts-token: invalid_token_number: a token is exactly 20 decimal digits, got 3 characters\n"
    )


VK_EA11 = EA11_KEY[1]


def _key_args(key: str) -> list[str]:
    return ["--vending-key", key, *EA11_KEY[2:]]


def test_vending_key_from_a_file_gives_the_same_decoder_key(tmp_path: Path) -> None:
    key_file = tmp_path / "vk.hex"
    key_file.write_text(f"  {VK_EA11}\n")
    from_file = run("decoder-key", *_key_args(f"@{key_file}"))
    assert from_file.exit_code == 0, from_file.output
    assert from_file.output == run("decoder-key", *EA11_KEY).output


def test_vending_key_from_stdin_gives_the_same_decoder_key() -> None:
    from_stdin = CliRunner().invoke(main, ["decoder-key", *_key_args("-")], input=VK_EA11 + "\n")
    assert from_stdin.exit_code == 0, from_stdin.output
    assert from_stdin.output == run("decoder-key", *EA11_KEY).output


def test_decoder_key_from_a_file_makes_the_same_token(tmp_path: Path) -> None:
    decoder = run("decoder-key", *EA11_KEY).output.strip()
    (tmp_path / "dk").write_text(decoder)
    timing = [
        "--subclass", "electricity", "--amount", "25.6", "--at", "2004-03-01T13:00", "--rnd", "5",
        "--base-date", "1993",
    ]  # fmt: skip
    from_file = run("credit", "--decoder-key", f"@{tmp_path / 'dk'}", *timing)
    assert from_file.exit_code == 0, from_file.output
    assert from_file.output == run("credit", "--decoder-key", decoder, *timing).output


def test_new_vending_key_from_a_file_gives_the_same_key_change(tmp_path: Path) -> None:
    new_key = "0123456789abcdef0123456789abcdef01234567"
    (tmp_path / "new").write_text(new_key + "\n")
    rest = [
        "--new-sgc", "123457", "--new-ti", "01", "--new-krn", "2", "--new-kt", "2",
        "--new-ken", "133", "--new-base-date", "2014",
    ]  # fmt: skip
    from_file = run("key-change", *EA11_KEY, "--new-vending-key", f"@{tmp_path / 'new'}", *rest)
    assert from_file.exit_code == 0, from_file.output
    assert (
        from_file.output == run("key-change", *EA11_KEY, "--new-vending-key", new_key, *rest).output
    )


def test_an_unreadable_key_file_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = run("decoder-key", *_key_args(f"@{tmp_path / 'missing'}"))
    assert result.exit_code == 2
    assert result.output == (
        f"sts-token: usage: Invalid value for '--vending-key': cannot read {tmp_path / 'missing'}"
        ": No such file or directory\n"
    )


def test_a_key_file_with_no_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    result = run("decoder-key", *_key_args(f"@{tmp_path / 'empty'}"))
    assert result.exit_code == 2
    assert result.output == (
        f"sts-token: usage: Invalid value for '--vending-key': {tmp_path / 'empty'} holds no key\n"
    )


def test_a_bad_key_in_a_file_is_refused_without_showing_it(tmp_path: Path) -> None:
    (tmp_path / "bad").write_text("not-a-secret-but-not-hex")
    result = run("decoder-key", *_key_args(f"@{tmp_path / 'bad'}"))
    assert result.exit_code == 1
    assert result.output == "sts-token: invalid_key: vending key must be hexadecimal\n"


def test_only_one_key_can_come_from_stdin() -> None:
    args = ["key-change", *_key_args("-"), "--new-vending-key", "-", "--new-sgc", "123457"]
    rest = ["--new-ti", "01", "--new-krn", "2", "--new-kt", "2", "--new-ken", "1"]
    result = CliRunner().invoke(
        main, [*args, *rest, "--new-base-date", "2014"], input=f"{VK_EA11}\n{VK_EA11}\n"
    )
    assert result.exit_code == 2
    assert result.output.endswith("only one key can be read from stdin ('-')\n")
