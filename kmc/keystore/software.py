"""The software key store: every key in this process, sealed under a master key file.

It keeps one 256-bit storage master key in the instance folder (mode 0600) and seals each secret
with AES-256-GCM, binding it to its identity through the associated data so a sealed value
cannot be moved to another row. The PKI private keys are sealed the same way in
`<instance>/pki/<name>.key.sealed`. The `pkcs11` back end implements the same contract
(`kmc.keystore`) with the keys on a token.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kmc.config import write_private_file
from kmc.errors import KeyStoreError
from kmc.sealing import master_key

_NONCE_BYTES = 12
_FORMAT = b"\x01"  # version byte of the sealed format: 01 | nonce(12) | ciphertext+tag


PKI_DIR = "pki"


class SoftwareKeyStore:
    kind = "software"

    def __init__(self, master_key: Callable[[], bytes], pki_folder: Path | None = None) -> None:
        self._master_key = master_key  # asked at every use: it may be sealed (kmc.sealing)
        self._pki_folder = pki_folder

    @property
    def _aead(self) -> AESGCM:
        return AESGCM(self._master_key())

    def __repr__(self) -> str:
        return "SoftwareKeyStore(<master key hidden>)"

    @classmethod
    def from_instance(cls, instance: Path, *, create: bool = False) -> SoftwareKeyStore:
        return cls(master_key(instance, create=create), instance / PKI_DIR)

    def seal(self, secret: bytes, identity: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _FORMAT + nonce + self._aead.encrypt(nonce, secret, identity)

    def sealed_here(self, sealed: bytes) -> bool:
        return sealed[:1] == _FORMAT

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

    def generate_secret(
        self, length: int, identity: bytes, check: Callable[[bytes], bytes]
    ) -> tuple[bytes, bytes]:
        material = secrets.token_bytes(length)
        return self.seal(material, identity), check(material)

    def _key_path(self, name: str) -> Path:
        if self._pki_folder is None:
            raise KeyStoreError("this key store has no PKI folder")
        return self._pki_folder / f"{name}.key.sealed"

    def has_signing_key(self, name: str) -> bool:
        return self._key_path(name).exists()

    def create_signing_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        key = ec.generate_private_key(ec.SECP384R1())
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_private_file(self._key_path(name), self.seal(der, f"pki:{name}".encode()))
        return key

    def signing_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        der = self.open(self._key_path(name).read_bytes(), f"pki:{name}".encode())
        key = serialization.load_der_private_key(der, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def agree(self, peer: ec.EllipticCurvePublicKey) -> tuple[ec.EllipticCurvePublicKey, bytes]:
        ephemeral = ec.generate_private_key(ec.SECP384R1())
        return ephemeral.public_key(), ephemeral.exchange(ec.ECDH(), peer)

    def session_secret(self) -> bytes | None:
        """None: a software KMC is one node, its Flask secret a file of its instance folder."""
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "keystore": self.kind,
            "on_token": [],
            "in_process": ["sign", "seal", "open", "generate", "ecdh", "kdf", "wrap", "kcv"],
        }
