"""Every vector of the shared STS set (`shared/sts/vectors.json`) through the library and the CLI.

Provenance: SPEC.md section 12 — STS 531-1 compliance sets as reproduced by an independent oracle,
RFC 2994 for MISTY1. Token vectors use the explicit ``tid`` field (the oracle's 00:01 quirk is not
part of the product, see docs/tokens.md).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from sts_token import (
    BaseDate,
    CreditRequest,
    CreditSubclass,
    CreditTransfer,
    DecoderKey,
    DecoderKeyAlgorithm,
    Ea07Tables,
    EncryptionAlgorithm,
    KeyChangeRequest,
    KeyExpiryNumber,
    KeyParameters,
    KeyRevisionNumber,
    KeyType,
    ManagementInstruction,
    ManagementKind,
    ManufacturerCode,
    MeterConfig,
    MeterTestInstruction,
    MeterTestSubclass,
    Misty1,
    Pan,
    SupplyGroupCode,
    TariffIndex,
    Tid,
    TokenError,
    TokenKey,
    TransferAmount,
    VendingKey,
    credit_token,
    credit_tokens,
    decode_key_change,
    decode_token,
    derive_decoder_key,
    issue_many,
    key_change_tokens,
    load_ea07_tables,
    management_token,
    meter_test_token,
    token_crc,
)
from sts_token.cli import main
from sts_token.misty1_batch import encrypt_blocks, key_words
from tests.conftest import require_shared_sts

SHARED = require_shared_sts()

TABLES_FILE = SHARED / "ea07_tables.json"
VECTORS: list[dict[str, Any]] = json.loads((SHARED / "vectors.json").read_text())["vectors"]


def _of_kind(*kinds: str) -> list[Any]:
    return [pytest.param(v, id=v["id"]) for v in VECTORS if v["kind"] in kinds]


@pytest.fixture(scope="module")
def tables() -> Ea07Tables:
    return load_ea07_tables(TABLES_FILE)


def _params(v: dict[str, Any]) -> KeyParameters:
    return KeyParameters(
        dkga=DecoderKeyAlgorithm.parse(v["dkga"]),
        ea=EncryptionAlgorithm.parse(v["ea"]),
        sgc=SupplyGroupCode(v["sgc"]),
        tariff_index=TariffIndex.parse(v["ti"]),
        krn=KeyRevisionNumber(v["krn"]),
        key_type=KeyType(v["key_type"]),
        base_date=BaseDate(v["base_date"]),
        ken=KeyExpiryNumber(v["ken"]),
    )


def _decoder_key(v: dict[str, Any], pan: str) -> DecoderKey:
    if v.get("decoder_key"):
        return DecoderKey.from_hex(v["decoder_key"], EncryptionAlgorithm.parse(v["ea"]))
    return derive_decoder_key(VendingKey.from_hex(v["vending_key"]), Pan(pan), _params(v))


def _token_key(v: dict[str, Any], pan: str, tables: Ea07Tables) -> TokenKey:
    return TokenKey(_decoder_key(v, pan), BaseDate(v["base_date"]), ea07_tables=tables)


def _key_options(v: dict[str, Any], pan: str | None) -> list[str]:
    if v.get("decoder_key"):
        options = ["--decoder-key", v["decoder_key"], "--ea", v["ea"]]
    else:
        options = [
            "--vending-key", v["vending_key"], "--dkga", v["dkga"], "--ea", v["ea"],
            "--sgc", v["sgc"], "--ti", v["ti"], "--krn", str(v["krn"]),
            "--kt", str(v["key_type"]), "--pan", str(pan),
        ]  # fmt: skip
    return [*options, "--base-date", str(v["base_date"]), "--ea07-tables", str(TABLES_FILE)]


def _cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result.output


# --- MISTY1 and CRC -------------------------------------------------------------------------


@pytest.mark.parametrize("v", _of_kind("misty1"))
def test_misty1_matches_rfc2994_both_ways(v: dict[str, Any]) -> None:
    cipher = Misty1(bytes.fromhex(v["key"]))
    assert cipher.encrypt(int(v["plaintext"], 16)) == int(v["ciphertext"], 16)
    assert cipher.decrypt(int(v["ciphertext"], 16)) == int(v["plaintext"], 16)


@pytest.mark.parametrize("v", _of_kind("misty1"))
def test_misty1_batch_engine_matches_rfc2994(v: dict[str, Any]) -> None:
    blocks = np.array([int(v["plaintext"], 16)] * 3, dtype=np.uint64)
    one_key = key_words(bytes.fromhex(v["key"]))
    key_per_block = key_words(bytes.fromhex(v["key"]) * 3)
    for keys in (one_key, key_per_block):
        assert encrypt_blocks(keys, blocks).tolist() == [int(v["ciphertext"], 16)] * 3


@pytest.mark.parametrize("v", _of_kind("crc"))
def test_crc_matches_vector(v: dict[str, Any]) -> None:
    assert token_crc(int(v["crc_input_50bit_hex"], 16)) == int(v["expected_crc"], 16)


@pytest.mark.parametrize("v", _of_kind("crc"))
def test_crc_input_is_built_from_the_vector_fields(v: dict[str, Any]) -> None:
    tid = Tid(v["tid"])
    built = (
        (v["token_class"] << 48)
        | (v["token_subclass"] << 44)
        | (v["rnd"] << 40)
        | (tid.value << 16)
        | TransferAmount(v["transfer_amount"]).field
    )
    assert built == int(v["crc_input_50bit_hex"], 16)
    assert f"{TransferAmount(v['transfer_amount']).field:04x}" == v["amount_field"]


# --- decoder keys ---------------------------------------------------------------------------


def _key_vectors() -> list[Any]:
    return [
        pytest.param(v, id=v["id"])
        for v in VECTORS
        if v["kind"] == "decoder_key" or (v["kind"] == "token" and v.get("expected_decoder_key"))
    ]


@pytest.mark.parametrize("v", _key_vectors())
def test_decoder_key_derivation_matches_vector(v: dict[str, Any]) -> None:
    assert _decoder_key(v, v["pan"]).hex() == v["expected_decoder_key"]


@pytest.mark.parametrize("v", _key_vectors())
def test_cli_decoder_key_matches_vector(v: dict[str, Any]) -> None:
    assert _cli("decoder-key", *_key_options(v, v["pan"])).strip() == v["expected_decoder_key"]


# --- single tokens --------------------------------------------------------------------------


def _library_token(v: dict[str, Any], tables: Ea07Tables) -> str:
    if v["token_class"] == 1:
        code = ManufacturerCode(v["manufacturer_code"])
        return meter_test_token(MeterTestSubclass(v["token_subclass"]), v["control"], code).digits
    key = _token_key(v, v["pan"], tables)
    tid = Tid(v["tid"])
    if v["token_class"] == 0:
        subclass = CreditSubclass(v["token_subclass"])
        amount = TransferAmount(v["transfer_amount"])
        return credit_token(key, subclass, amount, tid, rnd=v["rnd"]).digits
    kind = ManagementKind(v["token_subclass"])
    value = v.get("management_value", v.get("register"))
    return management_token(key, kind, value, tid, rnd=v["rnd"]).digits


@pytest.mark.parametrize("v", _of_kind("token"))
def test_library_generates_vector_token(v: dict[str, Any], tables: Ea07Tables) -> None:
    assert _library_token(v, tables) == v["expected_tokens"][0]


def _credit_vectors() -> list[dict[str, Any]]:
    return [v for v in VECTORS if v["kind"] == "token" and v["token_class"] == 0]


def test_batch_engine_makes_every_credit_vector_token(tables: Ea07Tables) -> None:
    for v in _credit_vectors():
        key = _token_key(v, v["pan"], tables)
        subclass, amount = CreditSubclass(v["token_subclass"]), TransferAmount(v["transfer_amount"])
        tokens = credit_tokens(
            key, subclass, [amount] * 2, [Tid(v["tid"])] * 2, rnds=[v["rnd"]] * 2
        )
        assert [t.digits for t in tokens] == v["expected_tokens"] * 2, v["id"]


def test_one_call_batch_makes_every_vector_credit_token_and_key_change_set_at_once(
    tables: Ea07Tables,
) -> None:
    """All vectors with a vending key in one `issue_many` call: EA07 and EA11, credit and key
    change mixed, each EA11 meter under its own key in the same engine pass."""
    credits = [v for v in _credit_vectors() if not v.get("decoder_key")]
    changes = [v for v in VECTORS if v["kind"] == "key_change"]
    requests: list[CreditRequest | KeyChangeRequest] = [
        CreditRequest(
            VendingKey.from_hex(v["vending_key"]), MeterConfig(Pan(v["pan"]), _params(v)),
            CreditSubclass(v["token_subclass"]), TransferAmount(v["transfer_amount"]),
            Tid(v["tid"]), v["rnd"],
        )
        for v in credits
    ] + [
        KeyChangeRequest(
            VendingKey.from_hex(v["old"]["vending_key"]),
            MeterConfig(Pan(v["pan"]), _params(v["old"])),
            VendingKey.from_hex(v["new"]["vending_key"]), _new_params(v), bool(v["rollover"]),
        )
        for v in changes
    ]  # fmt: skip
    outcomes = list(issue_many(requests, ea07_tables=tables))
    assert [[t.digits for t in o.tokens] for o in outcomes] == [
        v["expected_tokens"] for v in credits + changes
    ]
    assert {v["ea"] for v in credits} == {"07", "11"}


def _cli_token_args(v: dict[str, Any]) -> list[str]:
    if v["token_class"] == 1:
        return [
            "test", "--subclass", str(v["token_subclass"]), "--control", str(v["control"]),
            "--manufacturer-code", v["manufacturer_code"],
        ]  # fmt: skip
    common = [*_key_options(v, v["pan"]), "--ken", str(v.get("ken", 255))]
    timing = ["--tid", str(v["tid"]), "--rnd", str(v["rnd"])]
    if v["token_class"] == 0:
        amount = str(Decimal(v["transfer_amount"]) / 10)
        subclass = CreditSubclass(v["token_subclass"]).cli_name
        return ["credit", *common, "--subclass", subclass, "--amount", amount, *timing]
    kind = ManagementKind(v["token_subclass"])
    value: list[str] = []
    if "management_value" in v:
        value = ["--value", str(v["management_value"])]
    elif kind is ManagementKind.CLEAR_CREDIT:
        value = ["--register", str(v["register"])]
    return ["management", *common, "--kind", kind.cli_name, *value, *timing]


@pytest.mark.parametrize("v", _of_kind("token"))
def test_cli_generates_vector_token(v: dict[str, Any]) -> None:
    assert _cli(*_cli_token_args(v)).strip() == v["expected_tokens"][0]


@pytest.mark.parametrize("v", _of_kind("token"))
def test_library_decodes_vector_token_to_its_fields(v: dict[str, Any], tables: Ea07Tables) -> None:
    key = None if v["token_class"] == 1 else _token_key(v, v["pan"], tables)
    decoded = decode_token(v["expected_tokens"][0], key)
    if v["token_class"] == 1:
        assert isinstance(decoded, MeterTestInstruction)
        assert (decoded.subclass, decoded.control) == (v["token_subclass"], v["control"])
        assert decoded.manufacturer_code.digits == v["manufacturer_code"]
        return
    assert isinstance(decoded, CreditTransfer | ManagementInstruction)
    assert (decoded.rnd, decoded.tid.value) == (v["rnd"], v["tid"])
    if isinstance(decoded, CreditTransfer):
        assert decoded.subclass == v["token_subclass"]
        assert decoded.amount.tenths == v["transfer_amount"]
    else:
        assert decoded.kind == v["token_subclass"]
        assert decoded.value == v.get("management_value", v.get("register"))


@pytest.mark.parametrize("v", _of_kind("token"))
def test_cli_decodes_vector_token_to_its_fields(v: dict[str, Any]) -> None:
    key = [] if v["token_class"] == 1 else _key_options(v, v["pan"])
    fields = json.loads(_cli("decode", v["expected_tokens"][0], *key, "--json"))
    assert (fields["class"], fields["subclass"]) == (v["token_class"], v["token_subclass"])
    expected = {
        k: v[k]
        for k in ("tid", "rnd", "transfer_amount", "control", "manufacturer_code")
        if k in v and k in fields
    }
    assert {k: fields[k] for k in expected} == expected
    if v["token_class"] == 2:
        assert fields["value"] == v.get("management_value", v.get("register"))


def _all_vector_tokens() -> list[Any]:
    return [
        pytest.param(v, token, id=f"{v['id']}-{n}")
        for v in VECTORS
        if v["kind"] in ("token", "key_change")
        for n, token in enumerate(v["expected_tokens"])
    ]


@pytest.mark.parametrize(("v", "token"), _all_vector_tokens())
def test_no_single_digit_change_of_a_vector_token_passes(
    v: dict[str, Any], token: str, tables: Ea07Tables
) -> None:
    params = v.get("old", v)
    key = None if v.get("token_class") == 1 else _token_key(params, v["pan"], tables)
    for i in range(20):
        for digit in "0123456789":
            if digit != token[i]:
                with pytest.raises(TokenError):
                    decode_token(token[:i] + digit + token[i + 1 :], key)


# --- key change sets ------------------------------------------------------------------------


def _new_params(v: dict[str, Any]) -> KeyParameters:
    new = dict(v["new"], ken=(v["kenho"] << 4) | v["kenlo"])
    return _params(new)


@pytest.mark.parametrize("v", _of_kind("key_change"))
def test_library_generates_vector_key_change_set(v: dict[str, Any], tables: Ea07Tables) -> None:
    old = _token_key(v["old"], v["pan"], tables)
    new_key = _decoder_key(v["new"], v["pan"])
    tokens = key_change_tokens(old, new_key, _new_params(v), rollover=bool(v["rollover"]))
    assert [t.digits for t in tokens] == v["expected_tokens"]


@pytest.mark.parametrize("v", _of_kind("key_change"))
def test_cli_generates_vector_key_change_set(v: dict[str, Any]) -> None:
    new = v["new"]
    args = [
        "key-change", *_key_options(v["old"], v["pan"]), "--ken", str(v["old"]["ken"]),
        "--new-vending-key", new["vending_key"], "--new-sgc", new["sgc"], "--new-ti", new["ti"],
        "--new-krn", str(new["krn"]), "--new-kt", str(new["key_type"]),
        "--new-ken", str((v["kenho"] << 4) | v["kenlo"]), "--new-base-date", str(new["base_date"]),
        "--rollover" if v["rollover"] else "--no-rollover",
    ]  # fmt: skip
    assert _cli(*args).split() == v["expected_tokens"]


@pytest.mark.parametrize("v", _of_kind("key_change"))
def test_meter_assembles_new_key_from_vector_set(v: dict[str, Any], tables: Ea07Tables) -> None:
    old = _token_key(v["old"], v["pan"], tables)
    new_key = decode_key_change(v["expected_tokens"], old)
    new = v["new"]
    assert new_key.decoder_key == _decoder_key(new, v["pan"])
    assert new_key.krn.value == new["krn"]
    assert new_key.key_type.value == new["key_type"]
    assert new_key.tariff_index.digits == new["ti"]
    assert new_key.ken.value == (v["kenho"] << 4) | v["kenlo"]
    assert new_key.rollover is bool(v["rollover"])
    if new["ea"] == "11":
        assert new_key.sgc == SupplyGroupCode(new["sgc"])
    else:
        assert new_key.sgc is None


@pytest.mark.parametrize("v", _of_kind("key_change"))
def test_cli_decodes_every_section_of_vector_set(v: dict[str, Any]) -> None:
    sections = [
        json.loads(_cli("decode", token, *_key_options(v["old"], v["pan"]), "--json"))
        for token in v["expected_tokens"]
    ]
    assert [s["subclass"] for s in sections] == [3, 4, 8, 9][: len(v["expected_tokens"])]
    assert sections[0]["rollover"] is bool(v["rollover"])
    assert sections[0]["ken_nibble"] == v["kenho"]
    assert sections[1]["ken_nibble"] == v["kenlo"]
