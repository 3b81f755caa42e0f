"""The hand-written DER encoder writes exactly what asn1crypto writes for the same value."""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import core
from hypothesis import given
from hypothesis import strategies as st

from key_load_protocol import der

_aware_times = st.datetimes(
    min_value=dt.datetime(1000, 1, 1),
    max_value=dt.datetime(9999, 12, 31),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2))]),
)
# Lengths around the short/long form boundaries (127/128, 255/256) and a three-octet length.
_blobs = st.one_of(st.binary(max_size=300), st.integers(65_530, 65_540).map(bytes))


@given(
    st.integers(min_value=-(2**200), max_value=2**200)
    | st.sampled_from([-129, -128, -1, 0, 127, 128])
)
def test_integer(value: int) -> None:
    assert der.integer(value) == core.Integer(value).dump()


@given(_blobs)
def test_octet_string_and_its_lengths(value: bytes) -> None:
    assert der.octet_string(value) == core.OctetString(value).dump()


@given(st.binary(max_size=200))
def test_bit_string_of_whole_octets(value: bytes) -> None:
    assert der.bit_string(value) == core.OctetBitString(value).dump()


@given(st.from_regex(r"\A[0-9 ]{0,40}\Z"))
def test_numeric_string(value: str) -> None:
    assert der.numeric_string(value) == core.NumericString(value).dump()


@given(st.text(max_size=80))
def test_utf8_string(value: str) -> None:
    assert der.utf8_string(value) == core.UTF8String(value).dump()


@given(_aware_times)
def test_generalized_time_with_and_without_fractions(value: dt.datetime) -> None:
    assert der.generalized_time(value) == core.GeneralizedTime(value).dump()


@given(_aware_times.filter(lambda t: 1950 <= t.astimezone(dt.UTC).year <= 2049))
def test_utc_time(value: dt.datetime) -> None:
    assert der.utc_time(value) == core.UTCTime(value).dump()


def test_times_outside_their_range_or_naive_are_refused() -> None:
    with pytest.raises(ValueError, match="1950 to 2049"):
        der.utc_time(dt.datetime(2050, 1, 1, tzinfo=dt.UTC))
    with pytest.raises(ValueError, match="timezone-aware"):
        der.generalized_time(dt.datetime(2030, 1, 1))


@given(
    st.tuples(st.integers(0, 2), st.integers(0, 39)),
    st.lists(st.integers(0, 2**130), max_size=6),
)
def test_object_identifier(first: tuple[int, int], rest: list[int]) -> None:
    dotted = ".".join(str(arc) for arc in (*first, *rest))
    assert der.object_identifier(dotted) == core.ObjectIdentifier(dotted).dump()


def test_object_identifier_refuses_impossible_first_arcs() -> None:
    with pytest.raises(ValueError, match="not an object identifier"):
        der.object_identifier("1.40")


class _Pair(core.Sequence):
    _fields = [
        ("number", core.Integer),
        ("implicit", core.OctetString, {"implicit": 3, "optional": True}),
        ("explicit", core.Integer, {"explicit": 4, "optional": True}),
        ("numbers", core.SetOf, {"spec": core.Integer}),
    ]


@given(
    st.integers(-1000, 1000),
    st.none() | st.binary(max_size=20),
    st.none() | st.integers(0, 10**6),
    st.lists(st.integers(-(2**70), 2**70), max_size=8),
)
def test_sequence_tags_and_sorted_set_of(
    number: int, implicit: bytes | None, explicit: int | None, numbers: list[int]
) -> None:
    expected = _Pair(
        {"number": number, "implicit": implicit, "explicit": explicit, "numbers": numbers}
    ).dump()
    built = der.sequence(
        der.integer(number),
        b"" if implicit is None else der.implicit(3, der.octet_string(implicit)),
        b"" if explicit is None else der.explicit(4, der.integer(explicit)),
        der.set_of(der.integer(n) for n in numbers),
    )
    assert built == expected
