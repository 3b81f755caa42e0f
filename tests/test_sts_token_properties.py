"""Property tests: ciphers invert, every token kind round-trips, corrupted digits are caught.

What a 16-bit CRC honestly guarantees for a mistyped digit: the corrupted token is never decoded
back into the original instruction (the digit-to-block mapping and the ciphers are bijections, so
the decoded block differs), and it is refused unless its random-looking decrypted block happens to
carry a matching CRC, which happens about once in 65,536 corruptions. The tests check exactly that:
the deterministic part with hypothesis, the probabilistic part as a rate on a seeded sample (and,
as known answers, on every vector token in test_sts_token_vectors.py).
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from sts_token import (
    MAX_ENCODABLE,
    BaseDate,
    CreditSubclass,
    CreditTransfer,
    DecoderKey,
    DecoderKeyAlgorithm,
    Ea07Cipher,
    EncryptionAlgorithm,
    KeyExpiryNumber,
    KeyParameters,
    KeyRevisionNumber,
    KeyType,
    ManagementInstruction,
    ManagementKind,
    ManufacturerCode,
    MeterTestInstruction,
    MeterTestSubclass,
    Misty1,
    SupplyGroupCode,
    TariffIndex,
    Tid,
    Token,
    TokenError,
    TokenKey,
    TransferAmount,
    credit_token,
    decode_amount,
    decode_key_change,
    decode_token,
    encode_amount,
    key_change_tokens,
    load_ea07_tables,
    management_token,
    meter_test_token,
)
from tests.conftest import require_shared_sts

SHARED = require_shared_sts()

TABLES = load_ea07_tables(SHARED / "ea07_tables.json")
RAW_TABLES = json.loads((SHARED / "ea07_tables.json").read_text())

blocks = st.integers(min_value=0, max_value=(1 << 64) - 1)
ea07_keys = st.binary(min_size=8, max_size=8)
ea11_keys = st.binary(min_size=16, max_size=16)
rnds = st.integers(min_value=0, max_value=15)
base_dates = st.sampled_from([BaseDate(1993), BaseDate(2014), BaseDate(2035)])
tids = st.integers(min_value=0, max_value=(1 << 24) - 1).map(Tid)


@st.composite
def token_keys(draw: st.DrawFn) -> TokenKey:
    ea = draw(st.sampled_from(list(EncryptionAlgorithm)))
    key = DecoderKey(draw(st.binary(min_size=ea.key_bytes, max_size=ea.key_bytes)), ea)
    return TokenKey(key, draw(base_dates), ea07_tables=TABLES)


def _reference_ea07_encrypt(key: int, block: int) -> int:
    """SPEC 7 read literally, bit by bit: independent of the table-driven implementation."""
    s1, s2, p = RAW_TABLES["S1"], RAW_TABLES["S2"], RAW_TABLES["P"]
    mask = (1 << 64) - 1
    k0 = ~key & mask
    register = ((k0 >> 12) | (k0 << 52)) & mask
    for _ in range(16):
        substituted = 0
        for n in range(16):
            nibble = (block >> (4 * n)) & 0xF
            box = s2 if (register >> (4 * n + 3)) & 1 else s1
            substituted |= box[nibble] << (4 * n)
        block = 0
        for i in range(64):
            if (substituted >> i) & 1:
                block |= 1 << p[i]
        register = ((register << 1) | (register >> 63)) & mask
    return block


@given(ea07_keys, blocks)
def test_ea07_table_driven_cipher_matches_the_bitwise_reference(key: bytes, block: int) -> None:
    expected = _reference_ea07_encrypt(int.from_bytes(key, "big"), block)
    assert Ea07Cipher(key, TABLES).encrypt(block) == expected


@given(ea07_keys, blocks)
def test_ea07_decrypt_inverts_encrypt(key: bytes, block: int) -> None:
    cipher = Ea07Cipher(key, TABLES)
    assert cipher.decrypt(cipher.encrypt(block)) == block


@given(ea11_keys, blocks)
def test_misty1_decrypt_inverts_encrypt(key: bytes, block: int) -> None:
    cipher = Misty1(key)
    assert cipher.decrypt(cipher.encrypt(block)) == block


@given(st.integers(min_value=0, max_value=MAX_ENCODABLE))
def test_amount_decoding_returns_the_smallest_representable_value_not_below(value: int) -> None:
    carried = decode_amount(encode_amount(value))
    assert carried >= value
    assert carried == value or encode_amount(carried - 1) == encode_amount(value)


@given(
    token_keys(),
    st.sampled_from(list(CreditSubclass)),
    st.integers(min_value=0, max_value=MAX_ENCODABLE),
    tids,
    rnds,
)
def test_credit_token_round_trips(
    key: TokenKey, subclass: CreditSubclass, tenths: int, tid: Tid, rnd: int
) -> None:
    amount = TransferAmount(tenths)
    decoded = decode_token(credit_token(key, subclass, amount, tid, rnd=rnd), key)
    assert decoded == CreditTransfer(
        subclass, rnd, tid, tid.datetime(key.base_date), TransferAmount(decode_amount(amount.field))
    )


@given(token_keys(), st.sampled_from(list(ManagementKind)), st.data(), tids, rnds)
def test_management_token_round_trips(
    key: TokenKey, kind: ManagementKind, data: st.DataObject, tid: Tid, rnd: int
) -> None:
    if kind is ManagementKind.CLEAR_TAMPER:
        value = 0
    elif kind.amount_encoded:
        value = decode_amount(data.draw(st.integers(min_value=0, max_value=0xFFFF)))
    else:
        value = data.draw(st.integers(min_value=0, max_value=0xFFFF))
    decoded = decode_token(management_token(key, kind, value, tid, rnd=rnd), key)
    assert decoded == ManagementInstruction(kind, rnd, tid, tid.datetime(key.base_date), value)


@given(st.sampled_from(list(MeterTestSubclass)), st.data())
def test_meter_test_token_round_trips(subclass: MeterTestSubclass, data: st.DataObject) -> None:
    control = data.draw(st.integers(min_value=0, max_value=(1 << subclass.control_bits) - 1))
    code = data.draw(st.from_regex(rf"\A[0-9]{{{subclass.code_digits}}}\Z"))
    decoded = decode_token(meter_test_token(subclass, control, ManufacturerCode(code)))
    assert decoded == MeterTestInstruction(subclass, control, ManufacturerCode(code))


@given(token_keys(), st.data())
def test_key_change_set_round_trips(key: TokenKey, data: st.DataObject) -> None:
    ea = key.ea
    new_key = DecoderKey(data.draw(st.binary(min_size=ea.key_bytes, max_size=ea.key_bytes)), ea)
    params = KeyParameters(
        dkga=DecoderKeyAlgorithm.DKGA04,
        ea=ea,
        sgc=SupplyGroupCode(data.draw(st.from_regex(r"\A[0-9]{6}\Z"))),
        tariff_index=TariffIndex(data.draw(st.integers(0, 99))),
        krn=KeyRevisionNumber(data.draw(st.integers(1, 15))),
        key_type=KeyType(data.draw(st.integers(0, 3))),
        base_date=data.draw(base_dates),
        ken=KeyExpiryNumber(data.draw(st.integers(0, 255))),
    )
    rollover = data.draw(st.booleans())
    tokens = key_change_tokens(key, new_key, params, rollover=rollover)
    order = data.draw(st.permutations(tokens))
    result = decode_key_change(order, key)
    assert len(tokens) == (2 if ea is EncryptionAlgorithm.EA07 else 4)
    assert result.decoder_key == new_key
    assert (result.krn, result.key_type, result.ken) == (params.krn, params.key_type, params.ken)
    assert (result.tariff_index, result.rollover) == (params.tariff_index, rollover)
    assert result.sgc == (params.sgc if ea is EncryptionAlgorithm.EA11 else None)


def _single_digit_variants(token: Token) -> list[str]:
    return [
        token.digits[:i] + d + token.digits[i + 1 :]
        for i in range(20)
        for d in "0123456789"
        if d != token.digits[i]
    ]


def _decodes_to(text: str, key: TokenKey | None) -> object:
    try:
        return decode_token(text, key)
    except TokenError:
        return None


@given(token_keys(), tids, rnds, st.integers(0, 19), st.integers(1, 9))
@settings(max_examples=200)
def test_changed_digit_never_decodes_to_the_original_credit(
    key: TokenKey, tid: Tid, rnd: int, position: int, delta: int
) -> None:
    token = credit_token(key, CreditSubclass.ELECTRICITY, TransferAmount(256), tid, rnd=rnd)
    digit = str((int(token.digits[position]) + delta) % 10)
    corrupted = token.digits[:position] + digit + token.digits[position + 1 :]
    assert _decodes_to(corrupted, key) != decode_token(token, key)


def test_single_digit_changes_pass_the_crc_only_at_the_chance_rate() -> None:
    """171 variants of each of 80 seeded tokens (13,680 corruptions): about 0.2 CRC collisions are
    expected at 2^-16 each; a decoder that skipped or weakened the CRC would accept thousands."""
    rng = random.Random(20240601)
    accepted = 0
    for ea in EncryptionAlgorithm:
        for _ in range(40):
            key = TokenKey(
                DecoderKey(rng.randbytes(ea.key_bytes), ea), BaseDate(2014), ea07_tables=TABLES
            )
            when = datetime(2014, 1, 1) + timedelta(minutes=rng.randrange(1 << 24))
            amount = TransferAmount(rng.randrange(MAX_ENCODABLE))
            token = credit_token(key, CreditSubclass.WATER, amount, when, rnd=rng.randrange(16))
            accepted += sum(_decodes_to(v, key) is not None for v in _single_digit_variants(token))
    assert accepted <= 3


def test_every_single_digit_change_of_a_meter_test_token_is_refused() -> None:
    token = meter_test_token(MeterTestSubclass.DISPLAY_2, 0x1234567, ManufacturerCode("0042"))
    assert all(_decodes_to(v, None) is None for v in _single_digit_variants(token))
