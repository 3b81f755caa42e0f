"""A value one layer accepts as an identifier, every layer accepts (docs/protocol.md, "Identifiers").

Each identifier is tried at its boundaries through each layer's public entry point: the SM
registry (reading a CSR), the key store (key identities, key and authorisation specs), the
protocol (KeyIdentity, KeyLoadRequest, KeyLoadFile, LoadedKey), the SM emulator's argument
parsing and, where the rule is the same, the token engine.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from factories.example import example_keys
from key_load_protocol import KeyIdentity, KeyLoadFile, KeyLoadRequest, ProtocolError
from key_load_protocol.csr import build_csr
from kmc.errors import KMCError
from sm_emulator.errors import SmError
from sm_emulator.identity import check_id_man, check_smid
from sm_emulator.vending import parse_key
from sm_registry.csr import parse_request
from sts_token import KeyExpiryNumber, KeyType, SupplyGroupCode, TokenError
from vending_keys.domain import AuthorisationSpec, KeySpec, key_identity

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
KEY = ec.generate_private_key(ec.SECP384R1())
HUGE = "1" * 5000
REFUSALS = (ValueError, ProtocolError, KMCError, SmError, TokenError)

SMIDS = [
    "1", "9", "10", "600727000001", "1234567890123456", "9999999999999999",
    "0", "00", "0123", "01234567890123456", "12345678901234567", "",
    " 123", "123 ", "12 3", "123\n", "+1", "-1", "1e3", "12a4", "١٢٣", "１２３", "²", HUGE,
]  # fmt: skip
ID_MANS = [
    "1A2B", "1a2b", " 1a2b ", "0000", "FFFF", "ffff",
    "", "123", "12345", "GHIJ", "1A 2B", "١٢٣٤", "１２３４", "1A2B" * 1000,
]  # fmt: skip
SGCS = [
    "123456", "000000", "999999", "012345",
    "", "12345", "1234567", "12345a", " 123456", "123456 ", "١٢٣٤٥٦", "１２３４５６", HUGE,
]  # fmt: skip
KRNS = [1, 9, 0, 10, 15, 16, -1, True, 2**70]
KTS = [0, 1, 3, 4, -1, True, 2**70]
KENS = [0, 1, 255, 256, -1, True, 2**70]


def accepts(make: Callable[[], object]) -> bool:
    try:
        make()
    except REFUSALS:
        return False
    return True


def _registry_smid(smid: str) -> bool:
    try:
        csr = build_csr(KEY, smid, "1A2B")
    except ValueError:  # no CSR can carry it, so no registration either
        return False
    return accepts(lambda: parse_request(csr))


def _registry_id_man(id_man: str) -> bool:
    return accepts(lambda: parse_request(build_csr(KEY, "600727000001", id_man)))


def _key_file(smid: str) -> KeyLoadFile:
    return KeyLoadFile(smid, bytes(32), NOW, 1, "kmc", ())


def _authorisation(smid: str) -> AuthorisationSpec:
    return AuthorisationSpec(KeyIdentity("123456", 1, 1), smid)


def _key_spec(ken: int) -> KeySpec:
    return KeySpec(
        KeyIdentity("123456", 1, 1), "04", frozenset({"07"}), 2014, ken, NOW, NOW + dt.timedelta(1)
    )


def _loaded_key(ken: int) -> object:
    return dataclasses.replace(example_keys()[0], ken=ken)


def _agree(value: object, layers: dict[str, Callable[[], object] | bool]) -> bool:
    """Whether every layer accepts `value`; fails unless they all give the same answer."""
    verdicts = {
        name: layer if isinstance(layer, bool) else accepts(layer) for name, layer in layers.items()
    }
    assert len(set(verdicts.values())) == 1, f"{value!r:.40}: {verdicts}"
    return all(verdicts.values())


@pytest.mark.parametrize("smid", SMIDS, ids=lambda v: repr(v)[:24])
def test_every_layer_agrees_on_an_smid(smid: str) -> None:
    accepted = _agree(
        smid,
        {
            "registry csr": _registry_smid(smid),
            "authorisation": lambda: _authorisation(smid),
            "request": lambda: KeyLoadRequest.new(smid, None, request_time=NOW),
            "key-load file": lambda: _key_file(smid),
            "sm emulator": lambda: check_smid(smid),
        },
    )
    plain_number = smid.isascii() and smid.isdigit() and smid[0] != "0" and len(smid) <= 16
    assert accepted == plain_number


@pytest.mark.parametrize("id_man", ID_MANS, ids=lambda v: repr(v)[:24])
def test_every_layer_agrees_on_an_id_man(id_man: str) -> None:
    _agree(
        id_man,
        {
            "registry csr": _registry_id_man(id_man),
            "sm emulator": lambda: check_id_man(id_man),
        },
    )


@pytest.mark.parametrize("sgc", SGCS, ids=lambda v: repr(v)[:24])
def test_every_layer_agrees_on_an_sgc(sgc: str) -> None:
    _agree(
        sgc,
        {
            "protocol": lambda: KeyIdentity(sgc, 1, 1),
            "key store": lambda: key_identity(sgc, 1, 1),
            "sm emulator": lambda: parse_key(f"{sgc}:1:1"),
            "token engine": lambda: SupplyGroupCode(sgc),
        },
    )


def _as_text(value: int) -> str:
    return "x" if isinstance(value, bool) or value < 0 else str(value)


@pytest.mark.parametrize("krn", KRNS, ids=lambda v: repr(v)[:24])
def test_every_layer_agrees_on_a_krn(krn: int) -> None:
    # The token engine decodes any 4-bit KRN (up to 15); key loading narrows it to 1..9.
    _agree(
        krn,
        {
            "protocol": lambda: KeyIdentity("123456", krn, 1),
            "key store": lambda: key_identity("123456", krn, 1),
            "sm emulator": lambda: parse_key(f"123456:{_as_text(krn)}:1"),
        },
    )


@pytest.mark.parametrize("kt", KTS, ids=lambda v: repr(v)[:24])
def test_every_layer_agrees_on_a_kt(kt: int) -> None:
    accepted = _agree(
        kt,
        {
            "protocol": lambda: KeyIdentity("123456", 1, kt),
            "sm emulator": lambda: parse_key(f"123456:1:{_as_text(kt)}"),
            "token engine": lambda: KeyType(kt),
        },
    )
    # The key store vends KT 1-3 only (a policy): it accepts exactly the valid KTs except 0.
    assert accepts(lambda: key_identity("123456", 1, kt)) == (accepted and kt != 0)


@pytest.mark.parametrize("ken", KENS, ids=lambda v: repr(v)[:24])
def test_every_layer_agrees_on_a_ken(ken: int) -> None:
    _agree(
        ken,
        {
            "key store": lambda: _key_spec(ken),
            "protocol": lambda: _loaded_key(ken),
            "token engine": lambda: KeyExpiryNumber(ken),
        },
    )


@pytest.mark.parametrize("text", ["123456:١:1", "123456:1:١", "123456: 1:1", "123456:1:" + HUGE])
def test_the_sm_emulator_refuses_non_ascii_or_huge_numbers(text: str) -> None:
    assert not accepts(lambda: parse_key(text))


def test_a_refused_identifier_has_one_stable_reason_in_every_layer() -> None:
    refusals = []
    for make in (
        lambda: parse_request(build_csr(KEY, "0123", "1A2B")),
        lambda: _authorisation("0123"),
        lambda: check_smid("0123"),
    ):
        with pytest.raises((KMCError, SmError)) as refused:
            make()
        refusals.append(refused.value.reason)
    assert refusals == ["invalid_smid"] * 3
