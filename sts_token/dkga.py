"""Decoder key generation: DKGA02 (single DES, 64-bit vending key) and DKGA04 (HMAC-SHA-256)."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from sts_token.errors import InvalidKey, UnsupportedOperation
from sts_token.identifiers import DecoderKeyAlgorithm, EncryptionAlgorithm, Pan
from sts_token.keys import DecoderKey, KeyParameters, VendingKey


def derive_decoder_key(vending_key: VendingKey, pan: Pan, params: KeyParameters) -> DecoderKey:
    """Derive the meter's decoder key with the algorithm named in ``params`` (SPEC 6)."""
    if len(vending_key.value) != params.dkga.vending_key_bytes:
        raise InvalidKey(
            f"DKGA{params.dkga.value} needs a {params.dkga.vending_key_bytes}-byte vending key, "
            f"got {len(vending_key.value)} bytes"
        )
    if params.key_type.value == 3:
        raise UnsupportedOperation("key type 3 (common key) derivation is not supported")
    if params.dkga is DecoderKeyAlgorithm.DKGA02:
        return DecoderKey(_dkga02(vending_key.value, pan, params), EncryptionAlgorithm.EA07)
    return DecoderKey(_dkga04(vending_key.value, pan, params), params.ea)


def _dkga02(vk: bytes, pan: Pan, params: KeyParameters) -> bytes:
    pan_block = bytes.fromhex(pan.digits[1:17])
    control_block = bytes.fromhex(
        f"{params.key_type.value}{params.sgc.digits}{params.tariff_index.digits}"
        f"{params.krn.value:x}FFFFFF"
    )
    x = int.from_bytes(pan_block, "big") ^ int.from_bytes(control_block, "big")
    x_bytes = x.to_bytes(8, "big")
    # Triple DES with K1 = K2 = K3 is single DES; `cryptography` offers DES only this way.
    encryptor = Cipher(TripleDES(vk * 3), modes.ECB()).encryptor()
    e = int.from_bytes(encryptor.update(x_bytes) + encryptor.finalize(), "big")
    return (e ^ x ^ int.from_bytes(vk, "big")).to_bytes(8, "big")


def dkga04_message(pan: Pan, params: KeyParameters) -> bytes:
    """The DKGA04 HMAC input (SPEC 6.2 table); public so tests can pin it byte for byte."""
    key_bits = params.ea.key_bytes * 8
    return b"".join(
        (
            b"\x04\x02",
            b"04",
            b"\x02",
            params.base_date.code.encode("ascii"),
            b"\x02",
            params.ea.value.encode("ascii"),
            b"\x02",
            params.tariff_index.digits.encode("ascii"),
            b"\x00\x04\x06",
            params.sgc.digits.encode("ascii"),
            b"\x01",
            f"{params.key_type.value:x}".encode("ascii"),
            b"\x01",
            f"{params.krn.value:x}".encode("ascii"),
            b"\x12",
            pan.digits.encode("ascii"),
            key_bits.to_bytes(4, "big"),
        )
    )


def _dkga04(vk: bytes, pan: Pan, params: KeyParameters) -> bytes:
    digest = hmac.new(vk, dkga04_message(pan, params), hashlib.sha256).digest()
    return digest[: params.ea.key_bytes]
