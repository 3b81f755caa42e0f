"""Vending: tokens decode under the meter's key; every SM rule refuses and writes nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories.emulator import NOW, PAN, MiniKmc, loaded_key, ready_sm
from key_load_protocol import KeyIdentity, LoadedKey
from sm_emulator.cli import main
from sm_emulator.errors import InvalidRequest, VendRefused
from sm_emulator.module import SecurityModule
from sm_emulator.vending import MeterKey, Vending
from sts_token import (
    BaseDate,
    CreditSubclass,
    CreditTransfer,
    DecoderKeyAlgorithm,
    EncryptionAlgorithm,
    KeyExpiryNumber,
    KeyParameters,
    KeyRevisionNumber,
    KeyType,
    ManagementInstruction,
    ManagementKind,
    Pan,
    SupplyGroupCode,
    TariffIndex,
    Tid,
    TokenKey,
    TransferAmount,
    VendingKey,
    decode_key_change,
    decode_token,
    derive_decoder_key,
)
from sts_token.tid import TID_LIMIT

KEY = bytes(range(20))
UNIQUE = KeyIdentity("123457", 1, 2)


def _meter_key(key: LoadedKey, ti: int = 1) -> TokenKey:
    """The meter's decoder key, derived here independently of the SM."""
    params = KeyParameters(
        dkga=DecoderKeyAlgorithm(key.dkga),
        ea=EncryptionAlgorithm.EA11,
        sgc=SupplyGroupCode(key.identity.sgc),
        tariff_index=TariffIndex(ti),
        krn=KeyRevisionNumber(key.identity.krn),
        key_type=KeyType(key.identity.kt),
        base_date=BaseDate(key.base_date),
        ken=KeyExpiryNumber(key.ken),
    )
    decoder = derive_decoder_key(VendingKey(key.key_value), Pan(PAN), params)
    return TokenKey(decoder, params.base_date)


def _loaded(tmp_path: Path, *keys: LoadedKey) -> SecurityModule:
    kmc = MiniKmc()
    sm = ready_sm(tmp_path / "sm", kmc)
    sm.load(kmc.answer(sm.request(None), keys))
    return sm


def _meter(identity: KeyIdentity = UNIQUE) -> MeterKey:
    return MeterKey(identity, Pan(PAN), TariffIndex(1))


def _state(sm: SecurityModule) -> str:
    with sm.store.snapshot() as db:
        return hashlib.sha256("\n".join(db.iterdump()).encode()).hexdigest()


def _refused(vending: Vending, action: str, *args: object) -> str:
    before = _state(vending.sm)
    with pytest.raises(VendRefused) as refused:
        getattr(vending, action)(*args)
    assert _state(vending.sm) == before
    return refused.value.reason


def _credit(
    vending: Vending, amount: str = "10", currency: str = "5", meter: MeterKey | None = None
) -> object:
    return vending.credit(
        meter or _meter(),
        CreditSubclass.ELECTRICITY,
        TransferAmount.from_decimal(amount),
        Decimal(currency),
    )


def test_credit_token_decodes_under_the_meters_key_with_the_minute_tid(tmp_path: Path) -> None:
    key = loaded_key(key_value=KEY)
    vending = Vending(_loaded(tmp_path, key))
    vended = _credit(vending, "25.6", "12.50")
    decoded = decode_token(vended.tokens[0], _meter_key(key))  # type: ignore[attr-defined]
    assert isinstance(decoded, CreditTransfer)
    assert decoded.amount.tenths == 256
    assert decoded.tid == Tid.at(NOW.replace(tzinfo=None), BaseDate(2014))
    [register] = vending.sm.registers()
    assert register.currency_used == Decimal("12.50") and register.units_used_tenths == 256


def test_tids_for_one_meter_never_repeat_within_a_minute(tmp_path: Path) -> None:
    key = loaded_key(key_value=KEY)
    vending = Vending(_loaded(tmp_path, key))
    minute = Tid.at(NOW.replace(tzinfo=None), BaseDate(2014)).value
    tids = [_credit(vending).tid for _ in range(5)]  # type: ignore[attr-defined]
    assert tids == [minute, minute + 1, minute + 2, minute + 3, minute + 4]
    other = MeterKey(UNIQUE, Pan("600727000000000017"), TariffIndex(1))
    assert _credit(vending, meter=other).tid == minute  # type: ignore[attr-defined]
    # A management token shares the meter's TID store.
    assert vending.management(_meter(), ManagementKind.CLEAR_TAMPER, 0).tid == minute + 5


def test_the_next_free_tid_fills_a_gap(tmp_path: Path) -> None:
    vending = Vending(_loaded(tmp_path, loaded_key()))
    minute = Tid.at(NOW.replace(tzinfo=None), BaseDate(2014)).value
    with vending.sm.store.transaction() as db:
        db.executemany(
            "INSERT INTO issued_tid (pan, tid, slot, kind, issued_at) VALUES (?, ?, 1, 'credit', '')",
            [(PAN, minute), (PAN, minute + 1), (PAN, minute + 3)],
        )
    assert _credit(vending).tid == minute + 2  # type: ignore[attr-defined]


def test_credit_limit_refuses_the_vend_that_would_exceed_it(tmp_path: Path) -> None:
    vending = Vending(_loaded(tmp_path, loaded_key(clm=Decimal("100"))))
    _credit(vending, currency="60")
    _credit(vending, currency="40")  # exactly at the limit is allowed
    assert (
        _refused(
            vending,
            "credit",
            _meter(),
            CreditSubclass.ELECTRICITY,
            TransferAmount(1),
            Decimal("0.01"),
        )
        == "credit_limit"
    )


def test_resource_limit_counts_the_carried_units(tmp_path: Path) -> None:
    vending = Vending(_loaded(tmp_path, loaded_key(resource_limit=50)))
    _credit(vending, amount="49.9")
    assert (
        _refused(
            vending, "credit", _meter(), CreditSubclass.ELECTRICITY, TransferAmount(2), Decimal(0)
        )
        == "resource_limit"
    )
    _credit(vending, amount="0.1")


def test_no_credit_under_a_default_key_type(tmp_path: Path) -> None:
    default = KeyIdentity("123457", 1, 1)
    vending = Vending(_loaded(tmp_path, loaded_key(kt=1)))
    assert (
        _refused(
            vending,
            "credit",
            _meter(default),
            CreditSubclass.ELECTRICITY,
            TransferAmount(10),
            Decimal(1),
        )
        == "default_key"
    )


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (NOW + dt.timedelta(days=366), "key_use_expired"),
        (NOW - dt.timedelta(days=31), "key_not_yet_active"),
    ],
)
def test_tokens_only_between_act_and_iut(tmp_path: Path, now: dt.datetime, reason: str) -> None:
    sm = _loaded(tmp_path, loaded_key())
    sm.clock = lambda: now
    vending = Vending(sm)
    assert (
        _refused(
            vending, "credit", _meter(), CreditSubclass.ELECTRICITY, TransferAmount(10), Decimal(1)
        )
        == reason
    )
    assert _refused(vending, "management", _meter(), ManagementKind.CLEAR_TAMPER, 0) == reason


def _reload(folder: Path, kmc: MiniKmc, key: LoadedKey) -> None:
    """`key` loaded again through another opened SM on the same state (another process)."""
    other = SecurityModule(folder, clock=lambda: NOW)
    try:
        other.load(kmc.answer(other.request(None), (key,)))
    finally:
        other.close()


def test_a_key_reloaded_elsewhere_is_vended_under_its_new_load(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm = ready_sm(tmp_path / "sm", kmc)
    key = loaded_key(key_value=KEY)
    sm.load(kmc.answer(sm.request(None), (key,)))
    vending = Vending(sm)
    _credit(vending)
    _reload(tmp_path / "sm", kmc, loaded_key(key_value=KEY, iut=NOW - dt.timedelta(days=1)))
    assert (
        _refused(
            vending, "credit", _meter(), CreditSubclass.ELECTRICITY, TransferAmount(10), Decimal(1)
        )
        == "key_use_expired"
    )


def test_a_refusal_is_never_made_on_a_register_as_it_was_before_a_reload(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm = ready_sm(tmp_path / "sm", kmc)
    key = loaded_key(key_value=KEY, iut=NOW - dt.timedelta(days=1))
    sm.load(kmc.answer(sm.request(None), (key,)))
    vending = Vending(sm)
    assert (
        _refused(
            vending, "credit", _meter(), CreditSubclass.ELECTRICITY, TransferAmount(10), Decimal(1)
        )
        == "key_use_expired"
    )
    _reload(tmp_path / "sm", kmc, loaded_key(key_value=KEY))
    vended = _credit(vending, "2.5")
    decoded = decode_token(vended.tokens[0], _meter_key(key))  # type: ignore[attr-defined]
    assert isinstance(decoded, CreditTransfer) and decoded.amount.tenths == 25


def test_limits_count_what_other_processes_vended_meanwhile(tmp_path: Path) -> None:
    vending = Vending(_loaded(tmp_path, loaded_key(clm=Decimal("100"))))
    _credit(vending, currency="60")
    other = SecurityModule(tmp_path / "sm", clock=lambda: NOW)
    _credit(Vending(other), currency="40")
    other.close()
    with pytest.raises(VendRefused, match="to 100.01, above the credit limit 100") as refused:
        _credit(vending, currency="0.01")
    assert refused.value.reason == "credit_limit"


def test_a_tid_past_the_keys_ken_is_refused(tmp_path: Path) -> None:
    minute = Tid.at(NOW.replace(tzinfo=None), BaseDate(2014)).value
    vending = Vending(_loaded(tmp_path, loaded_key(ken=(minute >> 16) - 1)))
    assert (
        _refused(
            vending, "credit", _meter(), CreditSubclass.ELECTRICITY, TransferAmount(10), Decimal(1)
        )
        == "key_expired_ken"
    )


def test_a_meter_with_no_free_tid_left_under_its_base_date_is_refused(tmp_path: Path) -> None:
    sm = _loaded(tmp_path, loaded_key(iut=NOW + dt.timedelta(days=365 * 17)))
    near_the_end = BaseDate(2014).start + dt.timedelta(minutes=TID_LIMIT - 2)
    sm.clock = lambda: near_the_end.replace(tzinfo=dt.UTC)
    vending = Vending(sm)
    assert [_credit(vending).tid for _ in range(2)] == [TID_LIMIT - 2, TID_LIMIT - 1]  # type: ignore[attr-defined]
    assert (
        _refused(
            vending, "credit", _meter(), CreditSubclass.ELECTRICITY, TransferAmount(10), Decimal(1)
        )
        == "tid_exhausted"
    )


def test_a_time_before_the_base_date_is_refused(tmp_path: Path) -> None:
    vending = Vending(_loaded(tmp_path, loaded_key(base_date=2035)))
    assert (
        _refused(
            vending, "credit", _meter(), CreditSubclass.ELECTRICITY, TransferAmount(10), Decimal(1)
        )
        == "tid_out_of_range"
    )


def test_unknown_key_and_wrong_algorithm_are_refused(tmp_path: Path) -> None:
    vending = Vending(_loaded(tmp_path, loaded_key(eas=frozenset({"07", "11"}))))
    assert (
        _refused(
            vending,
            "credit",
            _meter(KeyIdentity("999999", 1, 2)),
            CreditSubclass.ELECTRICITY,
            TransferAmount(1),
            Decimal(1),
        )
        == "no_such_key"
    )
    with pytest.raises(InvalidRequest) as ambiguous:
        _credit(vending)
    assert ambiguous.value.reason == "ea_ambiguous"


def test_management_token_carries_its_value(tmp_path: Path) -> None:
    key = loaded_key(key_value=KEY)
    vending = Vending(_loaded(tmp_path, key))
    vended = vending.management(_meter(), ManagementKind.SET_MAX_POWER_LIMIT, 1000)
    decoded = decode_token(vended.tokens[0], _meter_key(key))
    assert isinstance(decoded, ManagementInstruction) and decoded.value == 1000


def test_key_change_set_carries_the_new_key_under_the_current_one(tmp_path: Path) -> None:
    old, new = (
        loaded_key(kt=1, key_value=KEY),
        loaded_key(kt=2, krn=2, key_value=bytes(range(1, 21))),
    )
    vending = Vending(_loaded(tmp_path, old, new))
    vended = vending.key_change(_meter(old.identity), new.identity, TariffIndex(2))
    assert len(vended.tokens) == 4
    changed = decode_key_change(vended.tokens, _meter_key(old))
    assert changed.decoder_key == _meter_key(new, ti=2).decoder_key
    assert (changed.krn.value, changed.key_type.value, changed.tariff_index.value) == (2, 2, 2)
    assert changed.rollover is False


def test_key_change_needs_the_new_key_in_its_dates_of_use(tmp_path: Path) -> None:
    old, new = loaded_key(kt=1), loaded_key(kt=2, krn=2, act=NOW + dt.timedelta(days=1))
    vending = Vending(_loaded(tmp_path, old, new))
    assert (
        _refused(vending, "key_change", _meter(old.identity), new.identity) == "key_not_yet_active"
    )


def test_only_default_keys_leave_the_sm_for_meter_manufacture(tmp_path: Path) -> None:
    default, unique = loaded_key(kt=1, key_value=KEY), loaded_key(kt=2)
    vending = Vending(_loaded(tmp_path, default, unique))
    assert vending.manufacturing_key(_meter(default.identity)) == _meter_key(default).decoder_key
    with pytest.raises(VendRefused) as refused:
        vending.manufacturing_key(_meter(unique.identity))
    assert refused.value.reason == "export_refused"


def _cli(*args: str, now: str = "2030-03-01T12:00:00Z") -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"SM_EMULATOR_FAKE_NOW": now})
    return result.exit_code, result.output


def test_vend_cli_prints_the_token_and_one_line_refusals(tmp_path: Path) -> None:
    _loaded(tmp_path, loaded_key(clm=Decimal(10))).close()
    meter = [
        "--state",
        str(tmp_path / "sm"),
        "--sgc",
        "123457",
        "--krn",
        "1",
        "--kt",
        "2",
        "--pan",
        PAN,
        "--ti",
        "1",
    ]
    code, out = _cli("vend", "credit", *meter, "--amount", "5", "--currency", "10")
    assert code == 0 and len(out.strip()) == 20 and out.strip().isdigit()
    code, out = _cli("vend", "credit", *meter, "--amount", "5", "--currency", "1")
    assert code == 1 and out.startswith("sm-emulator: credit_limit:")
    code, out = _cli(
        "vend", "credit", *meter, "--amount", "5", "--currency", "1", now="2031-03-02T12:00:00Z"
    )
    assert code == 1 and out.startswith("sm-emulator: key_use_expired:")
    code, out = _cli("vend", "credit", *meter, "--amount", "5", "--currency", "-1")
    assert code == 1 and out.startswith("sm-emulator: invalid_currency:")
    code, out = _cli("vend", "management", *meter, "--kind", "clear-credit", "--json")
    assert code == 0 and json.loads(out)["value"] == 0xFFFF
    code, out = _cli("vend", "management", *meter, "--kind", "clear-tamper", "--value", "3")
    assert code == 2 and "usage" in out


_VEND_LOOP = """
import sys
from decimal import Decimal
from pathlib import Path
from sm_emulator.errors import VendRefused
from sm_emulator.module import SecurityModule
from sm_emulator.vending import MeterKey, Vending
from key_load_protocol import KeyIdentity
from sts_token import CreditSubclass, Pan, TariffIndex, TransferAmount
sm = SecurityModule(Path(sys.argv[1]))
vending = Vending(sm)
meter = MeterKey(KeyIdentity("123457", 1, 2), Pan(sys.argv[2]), TariffIndex(1))
for _ in range(int(sys.argv[3])):
    try:
        v = vending.credit(meter, CreditSubclass.ELECTRICITY, TransferAmount(10), Decimal("1"))
        print(v.tid, flush=True)
    except VendRefused as refused:
        print(refused.reason, flush=True)
"""


def test_concurrent_processes_never_exceed_clm_nor_reuse_a_tid(tmp_path: Path) -> None:
    _loaded(
        tmp_path,
        loaded_key(
            clm=Decimal(30),
            act=dt.datetime(2020, 1, 1, tzinfo=dt.UTC),
            iut=dt.datetime(2039, 1, 1, tzinfo=dt.UTC),
        ),
    ).close()
    env = {**os.environ, "SM_EMULATOR_FAKE_NOW": ""}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _VEND_LOOP, str(tmp_path / "sm"), PAN, "12"],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(4)
    ]
    lines = [line for w in workers for line in w.communicate(timeout=120)[0].split()]
    assert all(w.returncode == 0 for w in workers)
    tids = [int(line) for line in lines if line.isdigit()]
    assert len(tids) == 30 and len(set(tids)) == 30
    assert lines.count("credit_limit") == 48 - 30
    [register] = SecurityModule(tmp_path / "sm").registers()
    assert register.currency_used == Decimal(30) and register.tokens_issued == 30
