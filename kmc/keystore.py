"""Where key material is encrypted at rest: a small interface with a software back end.

The software store gets one 256-bit storage master key from `kmc.sealing` (`master.key` in the
instance folder, mode 0600, or the vault the custodians unseal) at every use, and seals each
secret with AES-256-GCM, binding it to its identity through the associated data so a sealed value
cannot be moved to another row. An HSM back end (PKCS#11) would implement the same
two methods with the master key inside the HSM.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmc.errors import KeyStoreError
from kmc.sealing import master_key

_NONCE_BYTES = 12
_FORMAT = b"\x01"  # version byte of the sealed format: 01 | nonce(12) | ciphertext+tag


class KeyStore(Protocol):
    def seal(self, secret: bytes, identity: bytes) -> bytes: ...

    def open(self, sealed: bytes, identity: bytes) -> bytes: ...


class SoftwareKeyStore:
    def __init__(self, master_key: Callable[[], bytes]) -> None:
        self._master_key = master_key  # asked at every use: it may be sealed (kmc.sealing)

    @property
    def _aead(self) -> AESGCM:
        return AESGCM(self._master_key())

    def __repr__(self) -> str:
        return "SoftwareKeyStore(<master key hidden>)"

    @classmethod
    def from_instance(cls, instance: Path, *, create: bool = False) -> SoftwareKeyStore:
        return cls(master_key(instance, create=create))

    def seal(self, secret: bytes, identity: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT + nonce + self._aead.encrypt(nonce, secret, identity)

    def open(self, sealed: bytes, identity: bytes) -> bytes:
        if len(sealed) < 1 + _NONCE_BYTES + 16 or sealed[:1] != _FORMAT:
            raise KeyStoreError("sealed value has an unknown format")
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, sealed[1 + _NONCE_BYTES :], identity)
        except InvalidTag:
            raise KeyStoreError(
                "sealed value does not open under this master key and identity"
            ) from None
