"""Domain values validate once at construction and fail with specific, secret-free errors."""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime
from decimal import Decimal

import pytest

from sts_token import (
    MAX_ENCODABLE,
    BaseDate,
    DecoderKey,
    EncryptionAlgorithm,
    InvalidAmount,
    InvalidKey,
    InvalidPan,
    InvalidValue,
    KeyRevisionNumber,
    ManufacturerCode,
    Pan,
    SupplyGroupCode,
    TariffIndex,
    Tid,
    TidOutOfRange,
    TokenError,
    TransferAmount,
    VendingKey,
    decode_amount,
    encode_amount,
)


def test_pan_from_iin_and_drn_appends_luhn_digit() -> None:
    assert Pan.from_iin_drn("600727", "00000000000").digits == "600727000000000009"
    assert Pan.from_iin_drn("0000", "0100000000008").digits == "000001000000000082"


def test_pan_with_wrong_check_digit_is_refused() -> None:
    with pytest.raises(InvalidPan, match="check digit is 8, Luhn requires 9"):
        Pan("600727000000000008")


@pytest.mark.parametrize("text", ["60072700000000009", "6007270000000000090", "60072700000000000x"])
def test_pan_of_wrong_length_or_not_digits_is_refused(text: str) -> None:
    with pytest.raises(InvalidPan, match="PAN must be 18 decimal digits"):
        Pan(text)


def test_drn_with_wrong_check_digit_is_refused() -> None:
    with pytest.raises(InvalidPan, match="DRN check digit is 7, Luhn requires 8"):
        Pan.from_iin_drn("0000", "0100000000007")


def test_drn_length_must_complete_the_iin_to_17_digits() -> None:
    with pytest.raises(InvalidPan, match="DRN must be 11 decimal digits"):
        Pan.from_iin_drn("600727", "0100000000008")


def test_six_digit_iin_other_than_sts_is_refused() -> None:
    with pytest.raises(InvalidPan, match="must be the STS IIN 600727"):
        Pan.from_iin_drn("123456", "00000000000")


def test_manufacturer_code_width_follows_the_iin() -> None:
    assert Pan("600727000000000009").manufacturer_code == ManufacturerCode("00")
    four_digit = Pan.from_iin_drn("0000", "0123456789015")
    assert four_digit.iin == "0000"
    assert four_digit.drn == "0123456789015"
    assert four_digit.manufacturer_code == ManufacturerCode("0123")


@pytest.mark.parametrize("digits", ["7", "123", "12a"])
def test_manufacturer_code_must_be_two_or_four_digits(digits: str) -> None:
    with pytest.raises(InvalidValue, match="2 or 4 decimal digits"):
        ManufacturerCode(digits)


def test_sgc_must_be_six_digits() -> None:
    with pytest.raises(InvalidValue, match="SGC must be exactly 6 decimal digits"):
        SupplyGroupCode("12345")


@pytest.mark.parametrize("text", ["1", "01"])
def test_tariff_index_accepts_one_or_two_digits(text: str) -> None:
    assert TariffIndex.parse(text).digits == "01"


def test_krn_zero_is_refused() -> None:
    with pytest.raises(InvalidValue, match="key revision number must be an integer 1..15"):
        KeyRevisionNumber(0)


def test_unknown_base_date_is_refused() -> None:
    with pytest.raises(InvalidValue, match="base date must be 1993, 2014 or 2035"):
        BaseDate(2000)


def test_tid_counts_whole_minutes_and_drops_seconds() -> None:
    base = BaseDate(1993)
    assert Tid.at(datetime(1996, 3, 25, 13, 55, 22), base).value == 1698595
    assert Tid.at(datetime(1993, 1, 1, 0, 0, 59), base).value == 0


def test_tid_at_midnight_one_minute_is_not_shifted() -> None:
    assert Tid.at(datetime(2014, 1, 1, 0, 1), BaseDate(2014)).value == 1


def test_time_before_base_date_is_refused() -> None:
    with pytest.raises(TidOutOfRange, match="before the base date 2014"):
        Tid.at(datetime(2013, 12, 31, 23, 59), BaseDate(2014))


def test_time_past_the_24_bit_range_is_refused() -> None:
    base = BaseDate(1993)
    last = Tid.last_time(base)
    assert Tid.at(last, base).value == (1 << 24) - 1
    with pytest.raises(TidOutOfRange, match="past the 24-bit TID range"):
        Tid.at(last.replace(minute=last.minute + 1), base)


def test_amount_encoding_boundaries() -> None:
    assert encode_amount(16383) == 0x3FFF
    assert encode_amount(16384) == 0x4000
    assert encode_amount(16385) == 0x4001  # rounds up to 16394
    assert decode_amount(encode_amount(16385)) == 16394
    assert encode_amount(MAX_ENCODABLE) == 0xFFFF


def test_amount_encoding_rounds_up_to_the_nearest_representable_value() -> None:
    representable = sorted({decode_amount(field) for field in range(1 << 16)})
    for value in list(range(0, 200_000, 7)) + [MAX_ENCODABLE - 1, MAX_ENCODABLE]:
        assert (
            decode_amount(encode_amount(value)) == representable[bisect_left(representable, value)]
        )


def test_amount_above_maximum_is_refused() -> None:
    with pytest.raises(InvalidAmount, match="0..18201624"):
        encode_amount(MAX_ENCODABLE + 1)
    with pytest.raises(InvalidAmount, match="exceeds the maximum 1820162.4"):
        TransferAmount.from_decimal("1820162.5")


@pytest.mark.parametrize(
    ("text", "tenths"),
    [("25.6", 256), ("1820162.4", MAX_ENCODABLE), ("1.29", 12), ("0.01", 1), ("0", 0)],
)
def test_natural_amount_converts_to_tenths(text: str, tenths: int) -> None:
    assert TransferAmount.from_decimal(text).tenths == tenths


def test_carried_amount_shows_the_rounding_up() -> None:
    assert TransferAmount.from_decimal("1638.5").carried == Decimal("1639.4")


@pytest.mark.parametrize("text", ["-1", "abc", "NaN", "Infinity"])
def test_bad_natural_amount_is_refused(text: str) -> None:
    with pytest.raises(InvalidAmount):
        TransferAmount.from_decimal(text)


def test_key_lengths_are_checked() -> None:
    with pytest.raises(InvalidKey, match="8 bytes .DKGA02. or 20 bytes"):
        VendingKey(b"\x00" * 16)
    with pytest.raises(InvalidKey, match="an EA11 decoder key is 16 bytes, got 8"):
        DecoderKey(b"\x00" * 8, EncryptionAlgorithm.EA11)
    with pytest.raises(InvalidKey, match="must be hexadecimal"):
        VendingKey.from_hex("zz" * 8)


def test_key_material_never_appears_in_repr() -> None:
    secret = "abababababababab"
    assert secret not in repr(VendingKey.from_hex(secret))
    assert secret not in repr(DecoderKey.from_hex(secret))


def test_every_error_is_a_token_error_with_a_reason() -> None:
    with pytest.raises(TokenError) as caught:
        Pan("1")
    assert caught.value.reason == "invalid_pan"
