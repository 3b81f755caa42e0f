"""Vending keys at rest: AES-256-GCM under a key derived from the SM's private key file.

A software SM has no tamper-resistant memory, so the state database holds each vending key only
sealed. The sealing key is HKDF-SHA-256 over the SM's P-384 private scalar (the 0600 `sm.key`
file), so copying `state.db` alone reveals no key; whoever reads `sm.key` can open everything, as
they could impersonate the SM anyway. The associated data binds each ciphertext to its SMID and
key identity, so a sealed key cannot be moved to another register row or another SM.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from key_load_protocol import KeyIdentity
from sm_emulator.errors import StateError

_NONCE_BYTES = 12
_SALT = b"sm-emulator state v1"
_INFO = b"vending key register sealing"


class RegisterSeal:
    """Seals and opens vending keys for one SM; holds the derived key, never shows it."""

    __slots__ = ("_aead", "_smid")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, smid: str) -> None:
        scalar = private_key.private_numbers().private_value.to_bytes(48, "big")
        key = HKDF(hashes.SHA256(), 32, salt=_SALT, info=_INFO).derive(scalar)
        self._aead = AESGCM(key)
        self._smid = smid

    def __repr__(self) -> str:
        return f"RegisterSeal(smid={self._smid})"

    def _context(self, identity: KeyIdentity) -> bytes:
        return f"sm:{self._smid}:vk:{identity.sgc}:{identity.krn}:{identity.kt}".encode()

    def seal(self, identity: KeyIdentity, key_value: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, key_value, self._context(identity))

    def open(self, identity: KeyIdentity, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], self._context(identity)
            )
        except InvalidTag:
            raise StateError(
                "sealed_key_invalid",
                f"the stored key for {identity} does not open with this SM's key "
                "(state database altered or from another SM)",
            ) from None
