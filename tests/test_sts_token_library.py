"""Library-level behaviour beyond the vectors: refusals, EA07 tables handling, OpenSSL peer checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from sts_token import (
    BaseDate,
    CreditSubclass,
    DecoderKey,
    DecoderKeyAlgorithm,
    Ea07TablesInvalid,
    Ea07TablesMissing,
    EncryptionAlgorithm,
    KeyChangeIncomplete,
    KeyExpiryNumber,
    KeyParameters,
    KeyRevisionNumber,
    KeyType,
    Pan,
    SupplyGroupCode,
    TariffIndex,
    Tid,
    TokenKey,
    TransferAmount,
    UnsupportedOperation,
    VendingKey,
    assemble_key_change,
    credit_token,
    decode_token,
    derive_decoder_key,
    key_change_tokens,
    load_ea07_tables,
)
from sts_token.dkga import dkga04_message
from tests.conftest import require_shared_sts

SHARED = require_shared_sts()
TABLES_FILE = SHARED / "ea07_tables.json"

PAN = Pan("600727000000000009")
VK02 = VendingKey.from_hex("abababababababab")
VK04 = VendingKey.from_hex("abababababababab949494949494949401234567")


def _params(dkga: str = "04", ea: str = "11", **overrides: object) -> KeyParameters:
    values: dict[str, object] = {
        "dkga": DecoderKeyAlgorithm.parse(dkga),
        "ea": EncryptionAlgorithm.parse(ea),
        "sgc": SupplyGroupCode("123457"),
        "tariff_index": TariffIndex(1),
        "krn": KeyRevisionNumber(1),
        "key_type": KeyType(2),
        "base_date": BaseDate(1993),
        "ken": KeyExpiryNumber(255),
    }
    values.update(overrides)
    return KeyParameters(**values)  # type: ignore[arg-type]


def test_ea07_key_without_tables_raises_ea07_tables_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("STS_EA07_TABLES", raising=False)
    key = DecoderKey.from_hex("e653341f9d5bf36f")
    with pytest.raises(Ea07TablesMissing, match="set STS_EA07_TABLES"):
        TokenKey(key, BaseDate(1993))


def test_ea07_tables_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STS_EA07_TABLES", str(TABLES_FILE))
    key = TokenKey(DecoderKey.from_hex("e653341f9d5bf36f"), BaseDate(1993))
    token = credit_token(key, CreditSubclass.ELECTRICITY, TransferAmount(1), Tid(5871715), rnd=5)
    assert token.digits == "23716100501183194197"


def test_missing_tables_file_is_reported_as_missing(tmp_path: Path) -> None:
    with pytest.raises(Ea07TablesMissing, match="not found"):
        load_ea07_tables(tmp_path / "absent.json")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.update(S1=t["S1"][:15] + [0]), "S1 and S2 must each be a permutation"),
        (lambda t: t.update(P=list(range(63))), "P must be a permutation of 0..63"),
        (lambda t: t.update(S2_inverse=t["S1_inverse"]), "S2_inverse is not the inverse of S2"),
        (lambda t: t.pop("P"), "P must be a list of integers"),
    ],
)
def test_inconsistent_tables_are_refused(tmp_path: Path, mutate: object, message: str) -> None:
    tables = json.loads(TABLES_FILE.read_text())
    mutate(tables)  # type: ignore[operator]
    path = tmp_path / "tables.json"
    path.write_text(json.dumps(tables))
    with pytest.raises(Ea07TablesInvalid, match=message):
        load_ea07_tables(path)


def test_dkga02_is_only_for_ea07() -> None:
    with pytest.raises(UnsupportedOperation, match="DKGA02 .* only with EA07"):
        _params(dkga="02", ea="11")


def test_vending_key_length_must_suit_the_dkga() -> None:
    with pytest.raises(Exception, match="DKGA04 needs a 20-byte vending key, got 8 bytes"):
        derive_decoder_key(VK02, PAN, _params())


def test_key_change_cannot_switch_algorithm() -> None:
    old = TokenKey(derive_decoder_key(VK04, PAN, _params()), BaseDate(1993))
    new_params = _params(ea="07")
    new_key = derive_decoder_key(VK04, PAN, new_params)
    with pytest.raises(UnsupportedOperation, match="keeps the algorithm"):
        key_change_tokens(old, new_key, new_params)


def test_incomplete_key_change_set_is_refused() -> None:
    key = TokenKey(derive_decoder_key(VK04, PAN, _params()), BaseDate(1993))
    tokens = key_change_tokens(key, key.decoder_key, _params(krn=KeyRevisionNumber(2)))
    sections = [decode_token(t, key) for t in tokens]
    with pytest.raises(KeyChangeIncomplete, match="missing section.s.: fourth"):
        assemble_key_change(sections[:3], EncryptionAlgorithm.EA11)  # type: ignore[arg-type]
    with pytest.raises(KeyChangeIncomplete, match="first given twice"):
        assemble_key_change([sections[0], *sections], EncryptionAlgorithm.EA11)  # type: ignore[list-item]


def test_dkga04_message_matches_the_worked_example() -> None:
    assert dkga04_message(PAN, _params()).hex() == (
        "04023034023933023131023031000406313233343537013201311236303037323730303030303030303030303900000080"
    )  # fmt: skip


OPENSSL = shutil.which("openssl")


def _openssl(*args: str, data: bytes) -> bytes:
    assert OPENSSL is not None
    return subprocess.run([OPENSSL, *args], input=data, capture_output=True, check=True).stdout


@pytest.mark.skipif(OPENSSL is None, reason="OpenSSL CLI not installed")
def test_dkga04_hmac_agrees_with_openssl() -> None:
    message = dkga04_message(PAN, _params())
    peer = _openssl("mac", "-digest", "SHA256", "-macopt", f"hexkey:{VK04.value.hex()}", "-binary",
                    "HMAC", data=message)  # fmt: skip
    assert peer[:16] == derive_decoder_key(VK04, PAN, _params()).value
    assert peer == hmac.new(VK04.value, message, hashlib.sha256).digest()


@pytest.mark.skipif(OPENSSL is None, reason="OpenSSL CLI not installed")
def test_dkga02_des_step_agrees_with_openssl() -> None:
    x = bytes.fromhex("2151356011ffffff")  # PAN block xor control block (SPEC 11.1)
    try:
        des = _openssl("enc", "-des-ecb", "-nopad", "-K", VK02.value.hex(), "-provider", "legacy",
                       "-provider", "default", data=x)  # fmt: skip
    except subprocess.CalledProcessError:
        pytest.skip("OpenSSL legacy provider (single DES) unavailable")
    vk = int.from_bytes(VK02.value, "big")
    expected = int.from_bytes(des, "big") ^ int.from_bytes(x, "big") ^ vk
    params = _params(dkga="02", ea="07", sgc=SupplyGroupCode("123456"))
    assert derive_decoder_key(VK02, PAN, params).value == expected.to_bytes(8, "big")
