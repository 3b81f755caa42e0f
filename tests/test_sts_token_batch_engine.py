"""The batch engine equals the scalar engine bit for bit: MISTY1 over arrays (a key per block or
one key for all), the CRC and token digits over arrays, `credit_tokens` and `issue_many`, for
random keys, blocks and tokens (the RFC 2994 and token vectors are in test_sts_token_vectors.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sts_token import (
    MAX_ENCODABLE,
    BaseDate,
    CreditRequest,
    CreditSubclass,
    DecoderKey,
    EncryptionAlgorithm,
    InvalidKey,
    InvalidValue,
    KeyChangeRequest,
    KeyParameters,
    MeterConfig,
    Misty1,
    Pan,
    Tid,
    Token,
    TokenError,
    TokenKey,
    TransferAmount,
    VendingKey,
    credit_token,
    issue_credit,
    issue_key_change,
    issue_many,
    load_ea07_tables,
    token_crc,
)
from sts_token.crc import token_crc_array
from sts_token.identifiers import luhn_check_digit
from sts_token.misty1_batch import encrypt_blocks, key_words
from sts_token.one_call import ENGINE_FROM
from sts_token.tokens import credit_tokens
from tests.conftest import require_shared_sts

TABLES = load_ea07_tables(require_shared_sts() / "ea07_tables.json")

blocks = st.integers(min_value=0, max_value=(1 << 64) - 1)
ea11_keys = st.binary(min_size=16, max_size=16)
amounts = st.integers(min_value=0, max_value=MAX_ENCODABLE).map(TransferAmount)
tids = st.integers(min_value=0, max_value=(1 << 24) - 1).map(Tid)
rnds = st.integers(min_value=0, max_value=15)


def _array(values: list[int]) -> np.ndarray:  # type: ignore[type-arg]
    return np.array(values, dtype=np.uint64)


@given(st.lists(st.tuples(ea11_keys, blocks), min_size=1, max_size=40))
def test_misty1_over_arrays_with_a_key_per_block_equals_the_scalar_cipher(
    pairs: list[tuple[bytes, int]],
) -> None:
    keys = key_words(b"".join(key for key, _ in pairs))
    encrypted = encrypt_blocks(keys, _array([block for _, block in pairs]))
    assert encrypted.tolist() == [Misty1(key).encrypt(block) for key, block in pairs]


@given(ea11_keys, st.lists(blocks, min_size=1, max_size=40))
def test_misty1_over_arrays_under_one_key_equals_the_scalar_cipher(
    key: bytes, plain: list[int]
) -> None:
    cipher = Misty1(key)
    assert encrypt_blocks(key_words(key), _array(plain)).tolist() == [
        cipher.encrypt(block) for block in plain
    ]


@pytest.mark.parametrize("size", [0, 15, 17])
def test_misty1_keys_of_the_wrong_length_are_refused(size: int) -> None:
    with pytest.raises(InvalidKey, match="16 bytes each"):
        key_words(bytes(size))


@given(st.lists(st.integers(min_value=0, max_value=(1 << 50) - 1), min_size=1, max_size=40))
def test_crc_over_arrays_equals_the_scalar_crc(inputs: list[int]) -> None:
    assert token_crc_array(_array(inputs)).tolist() == [token_crc(value) for value in inputs]


@given(st.lists(st.tuples(st.integers(min_value=0, max_value=3), blocks), min_size=1))
def test_token_digits_over_arrays_equal_the_scalar_digits(pairs: list[tuple[int, int]]) -> None:
    classes, encrypted = _array([c for c, _ in pairs]), _array([b for _, b in pairs])
    assert Token.many_from_blocks(classes, encrypted) == [Token.from_block(c, b) for c, b in pairs]


@st.composite
def token_keys(draw: st.DrawFn) -> TokenKey:
    ea = draw(st.sampled_from(list(EncryptionAlgorithm)))
    key = DecoderKey(draw(st.binary(min_size=ea.key_bytes, max_size=ea.key_bytes)), ea)
    base_date = draw(st.sampled_from([BaseDate(1993), BaseDate(2014), BaseDate(2035)]))
    return TokenKey(key, base_date, ea07_tables=TABLES)


@given(
    token_keys(),
    st.sampled_from(list(CreditSubclass)),
    st.lists(st.tuples(amounts, tids, rnds), max_size=30),
)
def test_credit_tokens_equal_one_credit_token_at_a_time(
    key: TokenKey, subclass: CreditSubclass, items: list[tuple[TransferAmount, Tid, int]]
) -> None:
    many = credit_tokens(
        key, subclass, [a for a, _, _ in items], [t for _, t, _ in items],
        rnds=[r for _, _, r in items],
    )  # fmt: skip
    assert many == [credit_token(key, subclass, a, t, rnd=r) for a, t, r in items]


def test_credit_tokens_need_as_many_issue_times_as_amounts() -> None:
    key = TokenKey(DecoderKey(bytes(16), EncryptionAlgorithm.EA11), BaseDate(2014))
    amount = TransferAmount(10)
    with pytest.raises(InvalidValue, match="as many issue times"):
        credit_tokens(key, CreditSubclass.ELECTRICITY, [amount, amount], [Tid(1)])


@st.composite
def pans(draw: st.DrawFn) -> Pan:
    body = "600727" + draw(st.text("0123456789", min_size=11, max_size=11))
    return Pan(body + luhn_check_digit(body))


def _params(dkga: str, krn: int, base_date: int) -> KeyParameters:
    ea = "07" if dkga == "02" else "11"
    return KeyParameters.from_values(
        dkga=dkga, ea=ea, sgc="600100", ti=1, krn=krn, kt=2, base_date=base_date
    )


@st.composite
def requests(draw: st.DrawFn) -> CreditRequest | KeyChangeRequest:
    """EA11 mostly, some EA07 (scalar path) and some refused (issue time before the base date,
    a vending key of the wrong size), credit and key change mixed."""
    dkga = draw(st.sampled_from(["04", "04", "04", "02"]))
    size = draw(st.sampled_from([20, 20, 20, 8] if dkga == "04" else [8]))
    vending = VendingKey(draw(st.binary(min_size=size, max_size=size)))
    meter = MeterConfig(draw(pans()), _params(dkga, 1, draw(st.sampled_from([1993, 2014]))))
    if draw(st.booleans()):
        minutes = draw(st.integers(min_value=-10, max_value=(1 << 24) - 1))
        issued = datetime(2014, 1, 1) + timedelta(minutes=minutes)
        subclass = draw(st.sampled_from(list(CreditSubclass)))
        return CreditRequest(vending, meter, subclass, draw(amounts), issued, draw(rnds))
    new_vending = VendingKey(draw(st.binary(min_size=size, max_size=size)))
    new = _params(dkga, 2, draw(st.sampled_from([1993, 2014, 2035])))
    return KeyChangeRequest(vending, meter, new_vending, new, draw(st.none() | st.booleans()))


def _one_at_a_time(request: CreditRequest | KeyChangeRequest) -> tuple[str, ...] | str:
    try:
        if isinstance(request, CreditRequest):
            token = issue_credit(
                request.vending_key, request.meter, request.subclass, request.amount,
                request.issued, rnd=request.rnd, ea07_tables=TABLES,
            )  # fmt: skip
            return (token.digits,)
        tokens = issue_key_change(
            request.vending_key, request.meter, request.new_vending_key, request.new_params,
            rollover=request.rollover, ea07_tables=TABLES,
        )  # fmt: skip
    except TokenError as error:
        return error.reason
    return tuple(t.digits for t in tokens)


@settings(max_examples=60, deadline=None)
@given(st.lists(requests(), max_size=3 * ENGINE_FROM))
def test_issue_many_equals_the_one_calls_request_by_request(
    items: list[CreditRequest | KeyChangeRequest],
) -> None:
    """Short batches take the scalar calls, longer ones the engine: both give the same."""
    outcomes = list(issue_many(items, ea07_tables=TABLES))
    assert [o.index for o in outcomes] == list(range(len(items)))
    assert [o.error or tuple(t.digits for t in o.tokens) for o in outcomes] == [
        _one_at_a_time(request) for request in items
    ]
