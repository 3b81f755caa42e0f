"""Meter emulator: tokens made by the token engine (an independent producer) accepted or refused."""

from __future__ import annotations

import datetime as dt
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from meter_emulator.cli import main
from meter_emulator.meter import TID_MEMORY
from sts_token import (
    BaseDate,
    CreditSubclass,
    DecoderKeyAlgorithm,
    EncryptionAlgorithm,
    KeyExpiryNumber,
    KeyParameters,
    KeyRevisionNumber,
    KeyType,
    ManagementKind,
    Pan,
    SupplyGroupCode,
    TariffIndex,
    Tid,
    TokenKey,
    TransferAmount,
    VendingKey,
    credit_token,
    derive_decoder_key,
    key_change_tokens,
    management_token,
    meter_test_token,
)
from sts_token.identifiers import ManufacturerCode
from sts_token.kinds import MeterTestSubclass

PAN = "600727000000000009"
VK = "000102030405060708090a0b0c0d0e0f10111213"
MADE = dt.datetime(2030, 1, 1)


def _key(
    kt: int = 2, krn: int = 1, ken: int = 255, base_date: int = 2014
) -> tuple[TokenKey, KeyParameters]:
    params = KeyParameters(
        dkga=DecoderKeyAlgorithm.DKGA04,
        ea=EncryptionAlgorithm.EA11,
        sgc=SupplyGroupCode("123457"),
        tariff_index=TariffIndex(1),
        krn=KeyRevisionNumber(krn),
        key_type=KeyType(kt),
        base_date=BaseDate(base_date),
        ken=KeyExpiryNumber(ken),
    )
    return TokenKey(
        derive_decoder_key(VendingKey.from_hex(VK), Pan(PAN), params), params.base_date
    ), params


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def _init_args(folder: Path, pan: str = PAN, kt: int = 2, ken: int = 255) -> list[str]:
    """`meter-emulator init` arguments for the test meter (decoder key still to be given)."""
    fields = {
        "--pan": pan,
        "--sgc": "123457",
        "--ti": "1",
        "--krn": "1",
        "--kt": str(kt),
        "--ken": str(ken),
        "--base-date": "2014",
        "--dkga": "04",
        "--ea": "11",
    }
    return ["init", "--state", str(folder), *(x for pair in fields.items() for x in pair)]


def _init(
    folder: Path, kt: int = 2, ken: int = 255, *, key: str = "--vending-key", value: str = VK
) -> None:
    args = _init_args(folder, kt=kt, ken=ken)
    code, out = _run(*args, key, value, "--manufactured-at", MADE.isoformat())
    assert code == 0, out


def _enter(folder: Path, *tokens: str) -> tuple[int, list[dict[str, object]], dict[str, object]]:
    code, out = _run("enter", "--state", str(folder), "--json", *tokens)
    data = json.loads(out)
    return code, data["verdicts"], data["meter"]


def _credit(key: TokenKey, minutes_after_made: int, amount: int = 100) -> str:
    issued = MADE + dt.timedelta(minutes=minutes_after_made)
    return credit_token(key, CreditSubclass.ELECTRICITY, TransferAmount(amount), issued).digits


def test_credit_is_accepted_and_shown_as_balance(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    key, _ = _key()
    code, verdicts, meter = _enter(tmp_path / "m", _credit(key, 1, 256), _credit(key, 2, 100))
    assert code == 0 and [v["accepted"] for v in verdicts] == [True, True]
    assert meter["credit"]["electricity"] == "35.6"  # type: ignore[index]
    code, out = _run("show", "--state", str(tmp_path / "m"))
    assert "electricity 35.6" in out


def test_a_given_decoder_key_works_like_the_derived_one(tmp_path: Path) -> None:
    key, _ = _key()
    _init(tmp_path / "m", key="--decoder-key", value=key.decoder_key.hex())
    assert _enter(tmp_path / "m", _credit(key, 1))[0] == 0


def test_state_file_is_private_and_show_never_reveals_the_key(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    key, _ = _key()
    assert stat.S_IMODE((tmp_path / "m" / "meter.json").stat().st_mode) == 0o600
    code, out = _run("show", "--state", str(tmp_path / "m"), "--json")
    assert code == 0 and key.decoder_key.hex() not in out


def test_a_replayed_token_is_refused(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    key, _ = _key()
    token = _credit(key, 5)
    code, verdicts, meter = _enter(tmp_path / "m", token, token)
    assert code == 1
    assert verdicts[1]["reason"] == "tid_used"
    assert meter["credit"]["electricity"] == "10.0"  # type: ignore[index]


def test_a_token_from_before_manufacture_is_refused_as_old(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    key, _ = _key()
    assert _enter(tmp_path / "m", _credit(key, 0))[1][0]["reason"] == "tid_old"
    assert _enter(tmp_path / "m", _credit(key, -10))[1][0]["reason"] == "tid_old"


def test_out_of_order_tokens_are_accepted_until_they_fall_out_of_the_memory(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    key, _ = _key()
    late, early = _credit(key, 100), _credit(key, 50)
    assert _enter(tmp_path / "m", late, early)[0] == 0  # the older token is still within memory
    newer = [_credit(key, 200 + n) for n in range(TID_MEMORY)]
    assert _enter(tmp_path / "m", *newer)[0] == 0
    code, verdicts, _ = _enter(tmp_path / "m", _credit(key, 150))
    assert code == 1 and verdicts[0]["reason"] == "tid_old"


def test_a_token_past_the_key_expiry_number_is_refused(tmp_path: Path) -> None:
    tid = Tid.at(MADE, BaseDate(2014)).value
    _init(tmp_path / "m", ken=tid >> 16)
    key, _ = _key(ken=tid >> 16)
    assert _enter(tmp_path / "m", _credit(key, 1))[0] == 0
    past = Tid(((tid >> 16) + 1) << 16)
    token = credit_token(key, CreditSubclass.ELECTRICITY, TransferAmount(10), past).digits
    assert _enter(tmp_path / "m", token)[1][0]["reason"] == "key_expired"


def test_credit_under_a_default_key_is_refused(tmp_path: Path) -> None:
    _init(tmp_path / "m", kt=1)
    key, _ = _key(kt=1)
    assert _enter(tmp_path / "m", _credit(key, 1))[1][0]["reason"] == "default_key"


def test_a_token_for_another_key_or_mistyped_fails_its_crc(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    other, _ = _key(krn=2)
    assert _enter(tmp_path / "m", _credit(other, 1))[1][0]["reason"] == "crc_mismatch"
    code, out = _run("enter", "--state", str(tmp_path / "m"), "1234")
    assert code == 1 and "refused: invalid_token_number" in out


def test_management_tokens_apply(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    key, _ = _key()
    limit = management_token(
        key, ManagementKind.SET_MAX_POWER_LIMIT, 5000, MADE + dt.timedelta(minutes=3)
    )
    clear = management_token(
        key, ManagementKind.CLEAR_CREDIT, 0xFFFF, MADE + dt.timedelta(minutes=4)
    )
    code, verdicts, meter = _enter(tmp_path / "m", _credit(key, 1), limit.digits, clear.digits)
    assert code == 0
    assert meter["settings"] == {"max_power_limit_w": 5000}
    assert meter["credit"]["electricity"] == "0.0"  # type: ignore[index]


def test_meter_test_tokens_need_no_key(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    token = meter_test_token(MeterTestSubclass.DISPLAY_1, 1, ManufacturerCode("00"))
    code, verdicts, _ = _enter(tmp_path / "m", token.digits)
    assert code == 0 and verdicts[0]["kind"] == "test"


def test_key_change_switches_the_key_and_old_key_tokens_are_refused(tmp_path: Path) -> None:
    _init(tmp_path / "m", kt=1)
    old, _ = _key(kt=1)
    new, params = _key(kt=2, krn=2)
    sections = [t.digits for t in key_change_tokens(old, new.decoder_key, params)]
    code, verdicts, meter = _enter(tmp_path / "m", sections[2], sections[0], sections[3])
    assert code == 0 and meter["krn"] == 1 and meter["pending_key_change_sections"] == 3
    code, verdicts, meter = _enter(tmp_path / "m", sections[1])
    assert code == 0 and (meter["krn"], meter["kt"]) == (2, 2)
    code, verdicts, _ = _enter(tmp_path / "m", _credit(new, 1), _credit(old, 2), sections[0])
    assert [v.get("reason") for v in verdicts] == [None, "crc_mismatch", "crc_mismatch"]


def test_key_change_with_rollover_moves_the_base_date_and_resets_tid_memory(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    old, _ = _key()
    assert _enter(tmp_path / "m", _credit(old, 1))[0] == 0
    new, params = _key(krn=3, base_date=2035)
    sections = [t.digits for t in key_change_tokens(old, new.decoder_key, params)]
    code, _, meter = _enter(tmp_path / "m", *sections)
    assert code == 0 and meter["base_date"] == 2035
    assert meter["tid_memory"] == {"oldest": 0, "newest": 0}
    early = credit_token(new, CreditSubclass.ELECTRICITY, TransferAmount(10), Tid(5)).digits
    assert _enter(tmp_path / "m", early)[0] == 0


def test_init_refusals_are_one_line(tmp_path: Path) -> None:
    _init(tmp_path / "m")
    code, out = _run(*_init_args(tmp_path / "m"), "--vending-key", VK)
    assert code == 1 and out.startswith("meter-emulator: already_initialised:")
    code, out = _run("show", "--state", str(tmp_path / "none"))
    assert code == 1 and out.startswith("meter-emulator: not_initialised:")


@pytest.mark.parametrize("pan", ["600727000000000001", "12345"])
def test_init_refuses_a_bad_pan(tmp_path: Path, pan: str) -> None:
    code, out = _run(*_init_args(tmp_path / "m", pan=pan), "--vending-key", VK)
    assert code == 1 and out.startswith("meter-emulator: invalid_pan:")


def test_init_reads_the_vending_key_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "vk").write_text(VK + "\n")
    _init(tmp_path / "m", value=f"@{tmp_path / 'vk'}")
    key, _ = _key()
    assert _enter(tmp_path / "m", _credit(key, 1))[0] == 0


def test_init_reads_the_decoder_key_from_stdin(tmp_path: Path) -> None:
    key, _ = _key()
    result = CliRunner().invoke(
        main,
        [*_init_args(tmp_path / "m"), "--decoder-key", "-"],
        input=key.decoder_key.hex() + "\n",
    )
    assert result.exit_code == 0, result.output
    assert _enter(tmp_path / "m", _credit(key, 1))[0] == 0
