"""Both directions for every value (hypothesis), and no input whatsoever escapes as a non-protocol error."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from factories.example import example_key_load_file, example_request
from factories.mutations import mutations
from key_load_protocol import (
    KeyIdentity,
    KeyLoadFile,
    KeyLoadRequest,
    LoadedKey,
    ProtocolError,
    open_eklf,
    parse_request,
)
from key_load_protocol.codec import (
    decode_key_load_file,
    decode_request,
    encode_key_load_file,
    encode_request,
)
from tests.data.protocol.generate import FOLDER

_times = st.datetimes(
    min_value=dt.datetime(1993, 1, 1),
    max_value=dt.datetime(2099, 12, 31),
    timezones=st.just(dt.UTC),
).map(lambda t: t.replace(microsecond=0))
_identities = st.builds(
    KeyIdentity,
    sgc=st.from_regex(r"\A[0-9]{6}\Z"),
    krn=st.integers(1, 9),
    kt=st.integers(0, 3),
)
_smids = st.from_regex(r"\A[1-9][0-9]{0,15}\Z")
_nonces = st.binary(min_size=32, max_size=32)


@st.composite
def _loaded_keys(draw: st.DrawFn) -> LoadedKey:
    dkga = draw(st.sampled_from(["02", "04"]))
    eas = draw(st.sampled_from([{"07"}] if dkga == "02" else [{"07"}, {"11"}, {"07", "11"}]))
    act, iut, exp = sorted(draw(st.lists(_times, min_size=3, max_size=3, unique=True)))
    return LoadedKey(
        identity=draw(_identities),
        ken=draw(st.integers(0, 255)),
        base_date=draw(st.sampled_from([1993, 2014, 2035])),
        dkga=dkga,
        eas=frozenset(eas),
        key_value=draw(
            st.binary(min_size=8, max_size=8)
            if dkga == "02"
            else st.binary(min_size=20, max_size=20)
        ),
        act=act,
        exp=exp,
        iut=iut,
        clm=draw(st.none() | st.decimals(min_value=0, max_value=10**9, places=2).map(Decimal)),
        resource_limit=draw(st.none() | st.integers(0, 2**63 - 1)),
        refresh_days=draw(st.none() | st.integers(1, 3650)),
    )


@st.composite
def _key_load_files(draw: st.DrawFn) -> KeyLoadFile:
    keys = draw(st.lists(_loaded_keys(), max_size=6, unique_by=lambda k: k.identity))
    return KeyLoadFile(
        smid=draw(_smids),
        nonce=draw(_nonces),
        issue_time=draw(_times),
        sequence=draw(st.integers(1, 2**63 - 1)),
        kmc_id=draw(
            st.text(st.characters(categories=["L", "N", "Zs"]), min_size=1, max_size=64).filter(
                str.isprintable
            )
        ),
        keys=tuple(keys),
    )


_requests = st.builds(
    KeyLoadRequest,
    smid=_smids,
    nonce=_nonces,
    request_time=_times,
    keys=st.none() | st.lists(_identities, min_size=1, max_size=8, unique=True).map(tuple),
)


@given(_requests)
def test_request_encoding_round_trips(request: KeyLoadRequest) -> None:
    der = encode_request(request)
    assert decode_request(der) == request
    assert encode_request(decode_request(der)) == der


@given(_key_load_files())
def test_key_load_file_encoding_round_trips(klf: KeyLoadFile) -> None:
    der = encode_key_load_file(klf)
    assert decode_key_load_file(der) == klf
    assert encode_key_load_file(decode_key_load_file(der)) == der


def _golden(name: str) -> bytes:
    return (FOLDER / name).read_bytes()


@settings(max_examples=300)
@given(mutations(_golden("keyloadfile.der")))
def test_mutated_key_load_file_is_parsed_or_refused_as_protocol_error(der: bytes) -> None:
    try:
        decode_key_load_file(der)
    except ProtocolError:
        pass


@settings(max_examples=300)
@given(mutations(_golden("vkloadreq.der")))
def test_mutated_request_is_refused_or_verifies_as_the_same_request(der: bytes) -> None:
    """The carried SM certificate is not what the KMC verifies with, so changes there may pass;
    a request that verifies must still be exactly the signed one."""
    try:
        parsed = parse_request(der)
        parsed.verify(x509.load_pem_x509_certificate(_golden("sm.pem")))
    except ProtocolError:
        return
    assert parsed.request == example_request()


@pytest.fixture(scope="module")
def sm_key() -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(_golden("sm.key"), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@settings(max_examples=200)
@given(der=mutations(_golden("eklf.der")))
def test_mutated_eklf_is_refused_or_opens_to_the_same_file(
    der: bytes, sm_key: ec.EllipticCurvePrivateKey
) -> None:
    """Unsigned bytes (e.g. the carried certificate's signature encoding) may tolerate a change;
    what opens must still be exactly the signed key-load file."""
    try:
        klf = open_eklf(
            der,
            trusted_root=x509.load_pem_x509_certificate(_golden("root.pem")),
            sm_private_key=sm_key,
        )
    except ProtocolError:
        return
    assert klf == example_key_load_file()
