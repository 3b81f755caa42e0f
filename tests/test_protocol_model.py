"""Domain values of the key-load protocol: ranges, normalisation, secrecy in repr, SM-side checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from decimal import Decimal

import pytest

from factories.example import (
    DES_KEY,
    HMAC_KEY,
    NONCE,
    example_key_load_file,
    example_keys,
    example_request,
)
from key_load_protocol import (
    InvalidValue,
    KeyIdentity,
    KeyLoadFile,
    KeyLoadRequest,
    NotAnAnswer,
    Reason,
    key_check_value,
)


@pytest.mark.parametrize(
    ("sgc", "krn", "kt", "field"),
    [
        ("12345", 1, 0, "sgc"),
        ("1234567", 1, 0, "sgc"),
        ("12345a", 1, 0, "sgc"),
        ("１２３４５６", 1, 0, "sgc"),
        ("123456", 0, 0, "krn"),
        ("123456", 10, 0, "krn"),
        ("123456", True, 0, "krn"),
        ("123456", 1, 4, "kt"),
        ("123456", 1, -1, "kt"),
    ],
)
def test_key_identity_out_of_range_is_refused(sgc: str, krn: int, kt: int, field: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        KeyIdentity(sgc, krn, kt)
    assert refused.value.field == field
    assert refused.value.reason is Reason.INVALID_FIELD


@pytest.mark.parametrize("smid", ["", "12345678901234567", "12-34", 1234])
def test_request_smid_must_be_1_to_16_digits(smid: str) -> None:
    with pytest.raises(InvalidValue, match="^smid: "):
        dataclasses.replace(example_request(), smid=smid)


@pytest.mark.parametrize("nonce", [b"", bytes(16), bytes(33)])
def test_request_nonce_must_be_32_bytes(nonce: bytes) -> None:
    with pytest.raises(InvalidValue, match="^nonce: must be exactly 32 bytes"):
        dataclasses.replace(example_request(), nonce=nonce)


def test_request_time_must_be_aware() -> None:
    with pytest.raises(InvalidValue, match="^request_time: must be a timezone-aware datetime"):
        dataclasses.replace(example_request(), request_time=dt.datetime(2026, 1, 1))


def test_request_time_is_normalised_to_utc_whole_seconds() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    request = dataclasses.replace(
        example_request(), request_time=dt.datetime(2026, 1, 1, 14, 0, 5, 999, tzinfo=plus_two)
    )
    assert request.request_time == dt.datetime(2026, 1, 1, 12, 0, 5, tzinfo=dt.UTC)
    assert request.request_time.tzinfo is dt.UTC


def test_request_with_no_listed_keys_must_use_none() -> None:
    with pytest.raises(InvalidValue, match="use None for all authorised keys"):
        dataclasses.replace(example_request(), keys=())


def test_request_naming_a_key_twice_is_refused() -> None:
    key = KeyIdentity("123456", 1, 0)
    with pytest.raises(InvalidValue, match="names the same key twice"):
        dataclasses.replace(example_request(), keys=(key, key))


def test_new_request_draws_a_fresh_nonce() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    first = KeyLoadRequest.new("1", None, request_time=now)
    second = KeyLoadRequest.new("1", None, request_time=now)
    assert len(first.nonce) == 32
    assert first.nonce != second.nonce


def test_loaded_key_repr_hides_the_key_value() -> None:
    key = example_keys()[0]
    assert DES_KEY.hex() not in repr(key).lower()
    assert repr(DES_KEY) not in repr(key)
    assert "key_value" not in repr(key)


def test_request_and_file_repr_hide_the_nonce() -> None:
    assert repr(NONCE) not in repr(example_request())
    assert repr(NONCE) not in repr(example_key_load_file())


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"ken": 256}, "ken"),
        ({"base_date": 2000}, "base_date"),
        ({"dkga": "03"}, "dkga"),
        ({"eas": frozenset({"11"})}, "eas"),
        ({"eas": frozenset()}, "eas"),
        ({"eas": frozenset({"09"})}, "eas"),
        ({"key_value": bytes(20)}, "key_value"),
        ({"exp": dt.datetime(2026, 5, 1, tzinfo=dt.UTC)}, "exp"),
        ({"iut": dt.datetime(2040, 1, 1, tzinfo=dt.UTC)}, "iut"),
        ({"clm": Decimal("-1")}, "clm"),
        ({"clm": Decimal("0.0000001")}, "clm"),
        ({"clm": Decimal("NaN")}, "clm"),
        ({"resource_limit": -1}, "resource_limit"),
        ({"refresh_days": 0}, "refresh_days"),
    ],
)
def test_dkga02_key_out_of_range_is_refused(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        dataclasses.replace(example_keys()[0], **changes)
    assert refused.value.field == field


def test_dkga04_key_allows_ea11_and_needs_160_bits() -> None:
    key = example_keys()[1]
    assert key.eas == frozenset({"07", "11"})
    with pytest.raises(InvalidValue, match="^key_value: must be 20 bytes for DKGA04"):
        dataclasses.replace(key, key_value=DES_KEY)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sequence": 0}, "sequence"),
        ({"kmc_id": ""}, "kmc_id"),
        ({"kmc_id": "x" * 65}, "kmc_id"),
        ({"version": 2}, "version"),
        ({"keys": example_keys()[:1] * 2}, "keys"),
    ],
)
def test_key_load_file_out_of_range_is_refused(changes: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidValue) as refused:
        dataclasses.replace(example_key_load_file(), **changes)
    assert refused.value.field == field


def test_des_key_check_value_matches_the_published_banking_value() -> None:
    # DES(0123456789ABCDEF, 0000000000000000) = D5D44FF720683D0D, the textbook check value.
    assert key_check_value("02", DES_KEY) == bytes.fromhex("d5d44f")


def test_des_key_check_value_matches_openssl() -> None:
    key = bytes.fromhex("8a9f3e51c0d2a476")
    des = subprocess.run(
        ["openssl", "enc", "-des-ede3-ecb", "-nopad", "-K", (key * 3).hex()],
        input=bytes(8),
        capture_output=True,
        check=True,
    ).stdout
    assert key_check_value("02", key) == des[:3]


def test_hmac_key_check_value_matches_openssl() -> None:
    mac = subprocess.run(
        ["openssl", "mac", "-digest", "SHA256", "-macopt", f"hexkey:{HMAC_KEY.hex()}", "HMAC"],
        input=bytes(8),
        capture_output=True,
        check=True,
    ).stdout
    assert key_check_value("04", HMAC_KEY) == bytes.fromhex(mac.decode().strip())[:3]


def test_key_check_value_refuses_a_key_of_the_wrong_length() -> None:
    with pytest.raises(InvalidValue, match="no key check value for DKGA '02' with a 20-byte key"):
        key_check_value("02", HMAC_KEY)


def test_file_that_answers_the_outstanding_request_is_accepted() -> None:
    example_key_load_file().check_answers(
        smid=example_request().smid, outstanding_nonces=[bytes(32), NONCE], last_sequence=None
    )


@pytest.mark.parametrize(
    ("smid", "nonces", "last_sequence", "reason"),
    [
        ("60042000000002", [NONCE], None, Reason.SMID_MISMATCH),
        ("60042000000001", [bytes(32)], None, Reason.UNKNOWN_NONCE),
        ("60042000000001", [], None, Reason.UNKNOWN_NONCE),
        ("60042000000001", [NONCE], 1, Reason.SEQUENCE_NOT_INCREASING),
    ],
)
def test_file_that_does_not_answer_is_refused(
    smid: str, nonces: list[bytes], last_sequence: int | None, reason: Reason
) -> None:
    with pytest.raises(NotAnAnswer) as refused:
        example_key_load_file().check_answers(
            smid=smid, outstanding_nonces=nonces, last_sequence=last_sequence
        )
    assert refused.value.reason is reason


def test_key_identity_prints_as_sgc_krn_kt() -> None:
    klf = example_key_load_file()
    assert isinstance(klf, KeyLoadFile)
    assert [str(k.identity) for k in klf.keys] == ["SGC 123456 KRN 1 KT 0", "SGC 600727 KRN 2 KT 2"]
