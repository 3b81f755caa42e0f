"""Key check values: a short fingerprint that proves a loaded key arrived intact without revealing it."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from key_load_protocol.errors import InvalidValue

KCV_LENGTH = 3
DKGA02_KEY_LENGTH = 8
DKGA04_KEY_LENGTH = 20


def key_check_value(dkga: str, key_bytes: bytes) -> bytes:
    """The 3-byte check value of a vending key, by its decoder key generation algorithm.

    DKGA02 (64-bit DES key): the first 3 bytes of DES-ECB encryption of an all-zero block, the
    banking convention every HSM prints. DKGA04 (160-bit key): the first 3 bytes of
    HMAC-SHA-256(key, eight zero bytes), since a 160-bit key has no block cipher to run.
    """
    if dkga == "02" and len(key_bytes) == DKGA02_KEY_LENGTH:
        # K||K||K makes 3DES compute single DES, without the deprecated 8-byte TripleDES key form.
        encryptor = Cipher(TripleDES(key_bytes * 3), modes.ECB()).encryptor()
        return (encryptor.update(bytes(8)) + encryptor.finalize())[:KCV_LENGTH]
    if dkga == "04" and len(key_bytes) == DKGA04_KEY_LENGTH:
        return hmac.new(key_bytes, bytes(8), hashlib.sha256).digest()[:KCV_LENGTH]
    raise InvalidValue(
        "key_value", f"no key check value for DKGA {dkga!r} with a {len(key_bytes)}-byte key"
    )
