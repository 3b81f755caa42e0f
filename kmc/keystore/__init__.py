"""Where key material lives: one contract, two back ends chosen by `KMC_KEYSTORE`.

    software  (default) a 256-bit storage master key in the instance folder (`software.py`)
    pkcs11    a PKCS#11 token: storage key and PKI private keys on the token (`pkcs11.py`)

The contract is what the KMC asks of its keys, never the keys themselves:

    seal / open          storage of a secret bound to its identity (a blob moved to another
                         row does not open); `sealed_here` tells this store's blobs by their
                         format byte (what `kmc keystore migrate` has still to re-wrap)
    generate_secret      a new vending key from the store's generator, returned sealed with its
                         check value (the value never leaves the call)
    create_signing_key   a P-384 PKI key (root, issuing, keyload, audit); `signing_key` loads it.
                         The key is an `ec.EllipticCurvePrivateKey`: on a token its `sign` runs
                         on the token and its private parts cannot be read
    agree                the KMC side of an EKLF's ephemeral-static ECDH: (ephemeral public key,
                         shared secret Z) for an SM's public key
    session_secret       the Flask session secret when the store can give every node the same
                         one (pkcs11: an HMAC on the token); None for a one-node store
    describe             what `kmc hsm status` shows (back end, token, labels, what runs where)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from kmc.database import audited_refusal
from kmc.errors import KeyStoreError, Unavailable
from kmc.keystore.software import SoftwareKeyStore
from kmc.sealing import MASTER_KEY_FILE, Custody

BACK_ENDS = ("software", "pkcs11")
SIGNING_KEYS = ("root", "issuing", "keyload", "audit")

__all__ = [
    "BACK_ENDS",
    "MASTER_KEY_FILE",
    "KeyStore",
    "KeyStoreError",
    "SoftwareKeyStore",
    "open_keystore",
]


class KeyStore(Protocol):
    kind: str

    def seal(self, secret: bytes, identity: bytes) -> bytes: ...

    def open(self, sealed: bytes, identity: bytes) -> bytes: ...

    def sealed_here(self, sealed: bytes) -> bool: ...

    def generate_secret(
        self, length: int, identity: bytes, check: Callable[[bytes], bytes]
    ) -> tuple[bytes, bytes]: ...

    def has_signing_key(self, name: str) -> bool: ...

    def create_signing_key(self, name: str) -> ec.EllipticCurvePrivateKey: ...

    def signing_key(self, name: str) -> ec.EllipticCurvePrivateKey: ...

    def agree(self, peer: ec.EllipticCurvePublicKey) -> tuple[ec.EllipticCurvePublicKey, bytes]: ...

    def session_secret(self) -> bytes | None: ...

    def describe(self) -> dict[str, Any]: ...


# The app's recorder of a key-store fault (the app factory wires the audit log in, so the core
# imports no feature): called with the refusal once the refused use case has rolled back.
FAULT_AUDIT = "kmc.keystore.fault_audit"


def audited_fault(refusal: Unavailable) -> Unavailable:
    """`refusal` (hsm_unavailable, hsm_mechanism_missing) marked to leave one audit entry and
    nothing else: the use case it ends rolls its work back, then writes the entry."""
    from flask import current_app, has_app_context

    record: Callable[[Unavailable], None] | None = (
        current_app.extensions.get(FAULT_AUDIT) if has_app_context() else None
    )
    if record is None:
        return refusal
    return audited_refusal(refusal, lambda: record(refusal))


def current() -> KeyStore:
    """The app's key store (after `kmc init` created it)."""
    from flask import current_app

    store: KeyStore | None = current_app.extensions.get("kmc.keystore")
    if store is None:
        raise KeyStoreError("no key store: run `kmc init`")
    return store


def open_keystore(settings: Mapping[str, Any], *, create: bool = False) -> KeyStore | None:
    """The configured store; None for a software instance whose master key does not exist yet.

    `create` (kmc init) makes what is missing: the master key file, or the token's storage key.
    Configuration faults (PIN file, module, token label) are refused here, at start.
    """
    instance = Path(settings["KMC_INSTANCE"])
    kind = settings.get("KMC_KEYSTORE", "software")
    if kind == "pkcs11":
        from kmc.keystore.pkcs11 import Pkcs11KeyStore

        store = Pkcs11KeyStore.from_settings(settings)
        if create:
            store.ensure_storage_key()
        return store
    if kind != "software":
        raise KeyStoreError(f"KMC_KEYSTORE must be one of {', '.join(BACK_ENDS)}, not {kind!r}")
    if (
        not create
        and not (instance / MASTER_KEY_FILE).exists()
        and not Custody.path(instance).exists()
    ):
        return None
    return SoftwareKeyStore.from_instance(instance, create=create)
