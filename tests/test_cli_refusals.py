"""One refusal format for `kmc`, `sts-token`, `sm-emulator` and `meter-emulator`.

A refusal is `<prog>: <reason>: <message>` on stderr with exit 1; under `--json` it is the
object `{"error": reason, "message": ...}` on stdout. Usage errors exit 2 (under `--json` with
the object `{"error": "usage", ...}` on stdout as well).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from meter_emulator.cli import main as meter_main
from sm_emulator.cli import main as sm_main
from sts_token.cli import main as sts_main

TOKEN_MESSAGE = "a token is exactly 20 decimal digits, got 3 characters"


def _json_refusal(result, reason: str) -> str:
    """The refusal object a `--json` run printed (alone) on stdout; returns its message."""
    refusal = json.loads(result.stdout)
    assert set(refusal) == {"error", "message"}
    assert refusal["error"] == reason
    return refusal["message"]


# sts-token


def test_sts_token_refusal_is_one_line_on_stderr() -> None:
    result = CliRunner().invoke(sts_main, ["decode", "123"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"sts-token: invalid_token_number: {TOKEN_MESSAGE}\n"


def test_sts_token_refusal_under_json_is_an_object_on_stdout() -> None:
    result = CliRunner().invoke(sts_main, ["decode", "123", "--json"])
    assert result.exit_code == 1
    assert _json_refusal(result, "invalid_token_number") == TOKEN_MESSAGE
    assert result.stderr == ""


def test_sts_token_usage_error_exits_2() -> None:
    result = CliRunner().invoke(sts_main, ["decode"])
    assert result.exit_code == 2
    assert result.stderr == "sts-token: usage: Missing argument 'TOKEN'.\n"
    assert result.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["decode", "--json"],  # missing argument: the eager --json was processed
        ["decode", "--bogus", "--json", "123"],  # unknown option: parsing stopped before --json
    ],
)
def test_sts_token_usage_error_under_json_is_an_object_too(args: list[str]) -> None:
    result = CliRunner().invoke(sts_main, args)
    assert result.exit_code == 2
    message = _json_refusal(result, "usage")
    assert result.stderr == f"sts-token: usage: {message}\n"


def test_a_json_value_after_double_dash_does_not_ask_for_json() -> None:
    result = CliRunner().invoke(sts_main, ["decode", "--bogus", "--", "--json"])
    assert result.exit_code == 2
    assert result.stdout == ""


def test_installed_sts_token_refuses_in_json_without_traceback() -> None:
    script = Path(sys.executable).with_name("sts-token")
    result = subprocess.run(
        [str(script), "decode", "123", "--json"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"error": "invalid_token_number", "message": TOKEN_MESSAGE}
    assert result.stderr == ""


def test_an_unexpected_error_is_internal_error_not_a_traceback(monkeypatch) -> None:
    import sts_token.cli

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(sts_token.cli, "meter_test_token", broken)
    args = ["test", "--subclass", "0", "--control", "0", "--manufacturer-code", "12"]
    result = CliRunner().invoke(sts_main, args)
    assert result.exit_code == 1
    assert result.stderr == (
        "sts-token: internal_error: internal error (RuntimeError); rerun with STS_DEBUG=1\n"
    )
    result = CliRunner().invoke(sts_main, [*args, "--json"])
    assert result.exit_code == 1
    assert "secret detail" not in _json_refusal(result, "internal_error")
    monkeypatch.setenv("STS_DEBUG", "1")
    result = CliRunner().invoke(sts_main, args)
    assert isinstance(result.exception, RuntimeError)


# sm-emulator


def _sm_request(tmp_path: Path, *extra: str) -> list[str]:
    return ["request", "--state", str(tmp_path / "sm"), "--out", str(tmp_path / "req"), *extra]


def test_sm_emulator_refusal_is_one_line_on_stderr(tmp_path: Path) -> None:
    result = CliRunner().invoke(sm_main, _sm_request(tmp_path, "--key", "bad"))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "sm-emulator: invalid_key: key 'bad': expected SGC:KRN:KT\n"


def test_sm_emulator_refusal_under_json_is_an_object_on_stdout(tmp_path: Path) -> None:
    result = CliRunner().invoke(sm_main, _sm_request(tmp_path, "--key", "bad", "--json"))
    assert result.exit_code == 1
    assert _json_refusal(result, "invalid_key") == "key 'bad': expected SGC:KRN:KT"


def test_sm_emulator_usage_error_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(sm_main, _sm_request(tmp_path))
    assert result.exit_code == 2
    assert result.stderr == "sm-emulator: usage: give --key SGC:KRN:KT (one or more) or --all\n"
    result = CliRunner().invoke(sm_main, _sm_request(tmp_path, "--json"))
    assert result.exit_code == 2
    assert _json_refusal(result, "usage") == "give --key SGC:KRN:KT (one or more) or --all"


# meter-emulator


def test_meter_emulator_refusal_is_one_line_on_stderr(tmp_path: Path) -> None:
    result = CliRunner().invoke(meter_main, ["show", "--state", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"meter-emulator: not_initialised: {tmp_path} holds no meter;"
        " run `meter-emulator init` first\n"
    )


def test_meter_emulator_refusal_under_json_is_an_object_on_stdout(tmp_path: Path) -> None:
    result = CliRunner().invoke(meter_main, ["show", "--state", str(tmp_path), "--json"])
    assert result.exit_code == 1
    assert _json_refusal(result, "not_initialised").startswith(f"{tmp_path} holds no meter")


def test_meter_emulator_usage_error_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(meter_main, ["show"], env={"METER_EMULATOR_STATE": None})
    assert result.exit_code == 2
    assert result.stderr.startswith("meter-emulator: usage: Missing option '--state'")
    result = CliRunner().invoke(meter_main, ["show", "--json"], env={"METER_EMULATOR_STATE": None})
    assert result.exit_code == 2
    assert _json_refusal(result, "usage").startswith("Missing option '--state'")


# kmc


def test_kmc_refusal_is_one_line_on_stderr(kmc) -> None:
    result = kmc("sm", "approve", "4242", "--reason", "x", "--as", "operator1")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "kmc: unknown_sm: no SM with SMID 4242\n"


def test_kmc_refusal_under_json_is_an_object_on_stdout(kmc) -> None:
    result = kmc("sm", "approve", "4242", "--reason", "x", "--as", "operator1", "--json")
    assert result.exit_code == 1
    assert _json_refusal(result, "unknown_sm") == "no SM with SMID 4242"
    assert result.stderr == ""


def test_kmc_usage_error_exits_2(kmc) -> None:
    result = kmc("user", "create", "--role", "auditor")
    assert result.exit_code == 2
    assert result.stderr == "kmc: usage: Missing option '--username'.\n"
    result = kmc("user", "create", "--role", "auditor", "--json")
    assert result.exit_code == 2
    assert _json_refusal(result, "usage") == "Missing option '--username'."


def test_kmc_keystore_errors_have_a_stable_reason(kmc, monkeypatch) -> None:
    from kmc.accounts import service
    from kmc.keystore import KeyStoreError

    def unopenable() -> list[object]:
        raise KeyStoreError("a sealed value does not open")

    monkeypatch.setattr(service, "list_users", unopenable)
    result = kmc("user", "list")
    assert (result.exit_code, result.stderr) == (1, "kmc: keystore: a sealed value does not open\n")
    result = kmc("user", "list", "--json")
    assert _json_refusal(result, "keystore") == "a sealed value does not open"


def test_kmc_internal_error_is_one_line_unless_kmc_debug(kmc, monkeypatch) -> None:
    from kmc.accounts import service

    def broken() -> list[object]:
        raise RuntimeError("database detail")

    monkeypatch.setattr(service, "list_users", broken)
    monkeypatch.delenv("KMC_DEBUG", raising=False)
    result = kmc("user", "list")
    assert result.exit_code == 1
    assert result.stderr == (
        "kmc: internal_error: internal error (RuntimeError); rerun with KMC_DEBUG=1\n"
    )
    result = kmc("user", "list", "--json")
    assert result.exit_code == 1
    assert _json_refusal(result, "internal_error").startswith("internal error (RuntimeError)")
    monkeypatch.setenv("KMC_DEBUG", "1")
    result = kmc("user", "list")
    assert isinstance(result.exception, RuntimeError)


@pytest.mark.parametrize("main", [sts_main, sm_main, meter_main])
def test_a_program_run_bare_prints_its_help_not_a_usage_line(main) -> None:
    result = CliRunner().invoke(main, [])
    assert result.exit_code in (0, 2)  # click >= 8.2: 2
    assert result.output.startswith("Usage: ")


def test_kmc_group_run_bare_prints_its_help(kmc) -> None:
    result = kmc("user")
    assert result.exit_code in (0, 2)
    assert result.output.startswith("Usage: ")
