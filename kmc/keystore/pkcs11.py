"""The PKCS#11 key store: the storage key and the PKI private keys on a token (python-pkcs11).

On the token, created by `kmc init` / `kmc hsm init`, sensitive and never extractable:

    kmc-storage                 AES-256, wraps every stored secret (CKM_AES_KEY_WRAP_PAD, or
                                CKM_AES_KEY_WRAP_KWP with KMC_PKCS11_KEY_WRAP)
    kmc-session                 256-bit HMAC key: the Flask session secret is its HMAC-SHA256
                                of a fixed label, the same on every node sharing the token
    kmc-root, kmc-issuing,      P-384 key pairs; every certificate, EKLF, export and audit
    kmc-keyload, kmc-audit      checkpoint is signed on the token (CKM_ECDSA over SHA-384)

A stored secret is wrapped as one value: `identity tag (16) | length (2) | secret | zero pad to a
multiple of 8`, where the tag is SHA-256 of the row's identity. Opening unwraps it on the token
and refuses a tag that is not the row's (a blob copied to another row), so the binding holds
without associated data, and the true length is kept whatever the token's padding does
(SoftHSM2 2.6.1 unwraps a padded 20-byte key to 24 bytes). `docs/keys.md` says what reaches
process memory and for how long.

Each process opens its own session on first use (a gunicorn worker after fork); a lost session
is reopened once, and a token that stays away is `hsm_unavailable` until it is back.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from pkcs11 import KDF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11
from pkcs11.util.ec import encode_named_curve_parameters

from kmc.errors import KeyStoreError, Unavailable
from kmc.keystore import audited_fault

STORAGE_LABEL = "kmc-storage"
SESSION_LABEL = "kmc-session"
_SESSION_MESSAGE = b"kmc flask session secret 1"
# The format byte of a stored secret names the wrap that made it: 02 | CKM_AES_KEY_WRAP_PAD
# (what SoftHSM2 offers) or 03 | CKM_AES_KEY_WRAP_KWP (RFC 5649, PKCS#11 3.0), of
# (tag | length | secret | pad). KMC_PKCS11_KEY_WRAP chooses the one new secrets get.
KEY_WRAPS = {
    "AES_KEY_WRAP_PAD": (b"\x02", Mechanism.AES_KEY_WRAP_PAD),
    "AES_KEY_WRAP_KWP": (b"\x03", Mechanism.AES_KEY_WRAP_KWP),
}
_UNWRAPS = dict(KEY_WRAPS.values())
_TAG_BYTES = 16
_CURVE = ec.SECP384R1()
_COORDINATE = 48
_NEVER_OUT = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
# A value taken out of the token on purpose: the unwrapped secret, the ECDH shared secret.
_READABLE = {Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
_MISSING_MECHANISM = (p11.MechanismInvalid, p11.MechanismParamInvalid, p11.FunctionNotSupported)
_LOST = (
    p11.SessionHandleInvalid,
    p11.SessionClosed,
    p11.TokenNotPresent,
    p11.TokenNotRecognised,
    p11.DeviceRemoved,
    p11.DeviceError,
    p11.UserNotLoggedIn,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
    p11.NoSuchToken,
)
# What SoftHSM2 answers a login that reads the token file while another process rewrites it
# (it does at each login): the file looks broken, or looks like a token without a user PIN.
_HALF_WRITTEN = (p11.GeneralError, p11.UserPinNotInitialized, *_LOST)
T = TypeVar("T")
_TOKEN_LOOKUPS = 10


def signing_label(name: str) -> str:
    return f"kmc-{name}"


def read_pin_file(path: Path) -> str:
    """The user PIN from a file only its owner may read; never from argv or the environment."""
    try:
        info = path.stat()
    except OSError:
        raise KeyStoreError(f"the PIN file {path} does not exist") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyStoreError(f"the PIN file {path} is readable by others: chmod 600 it")
    pin = path.read_text(encoding="utf-8").strip()
    if not pin:
        raise KeyStoreError(f"the PIN file {path} is empty")
    return pin


class TokenSigningKey(ec.EllipticCurvePrivateKey):
    """A P-384 private key that stays on the token; pyca, X.509 and CMS builders call `sign`.

    SoftHSM2 has no CKM_ECDSA_SHA384, so the digest is made here and the token signs it with
    CKM_ECDSA; its raw r||s becomes the DER ECDSA-Sig-Value X.509 and CMS carry.
    """

    def __init__(self, store: Pkcs11KeyStore, label: str, public: ec.EllipticCurvePublicKey):
        self._store = store
        self._label = label
        self._public = public

    def __repr__(self) -> str:
        return f"TokenSigningKey({self._label})"

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, utils.Prehashed):
            digest = data
        else:
            hasher = hashes.Hash(algorithm)
            hasher.update(data)
            digest = hasher.finalize()
        raw = self._store.sign_digest(self._label, digest)
        return utils.encode_dss_signature(
            int.from_bytes(raw[:_COORDINATE], "big"), int.from_bytes(raw[_COORDINATE:], "big")
        )

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return _CURVE

    @property
    def key_size(self) -> int:
        return _CURVE.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise KeyStoreError("a KMC signing key on the token does no key agreement")

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise KeyStoreError("a private key on the token cannot be read")

    def private_bytes(self, *args: Any, **kwargs: Any) -> bytes:
        raise KeyStoreError("a private key on the token cannot be exported")

    def __copy__(self) -> TokenSigningKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> TokenSigningKey:
        return self


def _public_key(point_attribute: bytes) -> ec.EllipticCurvePublicKey:
    # CKA_EC_POINT is a DER OCTET STRING around the uncompressed point (04 61 04 ...).
    return ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, point_attribute[2:])


def _identity_tag(identity: bytes) -> bytes:
    return hashlib.sha256(b"kmc-seal:" + identity).digest()[:_TAG_BYTES]


class Pkcs11KeyStore:
    kind = "pkcs11"

    def __init__(
        self, module: str, token_label: str, pin: str, key_wrap: str = "AES_KEY_WRAP_PAD"
    ) -> None:
        self._module = module
        self._token_label = token_label
        self._pin = pin
        self._format, self._wrap = KEY_WRAPS[key_wrap]
        self._lock = threading.RLock()
        self._lib: Any = None
        self._session: Any = None
        self._pid = 0

    def __repr__(self) -> str:
        return f"Pkcs11KeyStore({self._module}, token {self._token_label!r}, <PIN hidden>)"

    @property
    def token_label(self) -> str:
        return self._token_label

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> Pkcs11KeyStore:
        """Refuses, with one line each, a configuration that cannot work (checked at start)."""
        module = settings.get("KMC_PKCS11_MODULE") or ""
        label = settings.get("KMC_PKCS11_TOKEN") or ""
        pin_file = settings.get("KMC_PKCS11_PIN_FILE") or ""
        for name, value in (
            ("KMC_PKCS11_MODULE", module),
            ("KMC_PKCS11_TOKEN", label),
            ("KMC_PKCS11_PIN_FILE", pin_file),
        ):
            if not value:
                raise KeyStoreError(f"KMC_KEYSTORE=pkcs11 needs {name}")
        key_wrap = settings.get("KMC_PKCS11_KEY_WRAP") or "AES_KEY_WRAP_PAD"
        if key_wrap not in KEY_WRAPS:
            raise KeyStoreError(
                f"KMC_PKCS11_KEY_WRAP must be one of {', '.join(KEY_WRAPS)}, not {key_wrap!r}"
            )
        store = cls(str(module), str(label), read_pin_file(Path(pin_file)), key_wrap)
        store._connect()
        return store

    # -- the session -------------------------------------------------------------------------

    def _connect(self) -> Any:
        """A logged-in read-write session of this process (opened after a fork, or reopened)."""
        if self._session is not None and self._pid == os.getpid():
            return self._session
        try:
            if self._lib is None:
                self._lib = pkcs11.lib(self._module)
            elif self._pid != os.getpid() or self._session is None:
                self._lib.reinitialize()
        except p11.PKCS11Error as error:
            self._lib = None
            raise KeyStoreError(f"{self._module} is not a PKCS#11 module ({error})") from None
        for attempt in range(_TOKEN_LOOKUPS):
            token = self._find_token()
            try:
                self._session = token.open(user_pin=self._pin, rw=True)
                break
            except p11.UserAlreadyLoggedIn:
                # Login is per process: another store of this process has logged in already.
                self._session = token.open(rw=True)
                break
            except (p11.PinIncorrect, p11.PinInvalid, p11.PinLenRange, p11.PinLocked):
                raise KeyStoreError(
                    f"the PIN in the PIN file does not open token {self._token_label!r}"
                ) from None
            except _HALF_WRITTEN as error:
                if attempt == _TOKEN_LOOKUPS - 1:
                    raise KeyStoreError(
                        f"token {self._token_label!r} refuses the login ({type(error).__name__})"
                    ) from None
                time.sleep(0.05 * (attempt + 1))
                self._lib.reinitialize()
        self._pid = os.getpid()
        return self._session

    def _find_token(self) -> Any:
        """The token by label. A module lists the tokens it saw at C_Initialize, and SoftHSM2
        does not list a token whose file another process is rewriting (it does at each login),
        or fails reading it (CKR_GENERAL_ERROR), so look again a few times, initialising the
        module afresh, before refusing."""
        unreadable = False
        for attempt in range(_TOKEN_LOOKUPS):
            try:
                return self._lib.get_token(token_label=self._token_label)
            except (p11.NoSuchToken, p11.GeneralError) as error:
                unreadable = isinstance(error, p11.GeneralError)
                time.sleep(0.05 * attempt)
                self._lib.reinitialize()
            except p11.MultipleTokensReturned:
                raise KeyStoreError(f"several tokens are labelled {self._token_label!r}") from None
        if unreadable:
            raise KeyStoreError(f"the PKCS#11 token {self._token_label!r} cannot be read")
        raise KeyStoreError(f"no PKCS#11 token labelled {self._token_label!r}")

    @contextmanager
    def _token(self) -> Iterator[Any]:
        with self._lock:
            try:
                yield self._session_or_unavailable()
            except _MISSING_MECHANISM as error:
                raise Unavailable(
                    "hsm_mechanism_missing",
                    f"the token does not offer a mechanism this needs ({type(error).__name__})",
                ) from None
            except (*_LOST, Unavailable):
                self._session = None  # the next operation initialises the module afresh
                raise

    def _session_or_unavailable(self) -> Any:
        try:
            return self._connect()
        except (KeyStoreError, p11.PKCS11Error) as error:
            self._session = None
            raise Unavailable("hsm_unavailable", f"the HSM is not available: {error}") from None

    def _run(self, operation: Callable[[Any], T]) -> T:
        """Run on the session; a lost session is reopened once, then `hsm_unavailable`. The
        refusal is audited (`kmc.keystore.audited_fault`) once its use case has rolled back."""
        try:
            return self._attempt(operation)
        except Unavailable as refusal:
            raise audited_fault(refusal) from None

    def _attempt(self, operation: Callable[[Any], T]) -> T:
        for attempt in (1, 2):
            try:
                with self._token() as session:
                    return operation(session)
            except _LOST as error:
                if attempt == 2:
                    raise Unavailable(
                        "hsm_unavailable", f"the HSM is not available ({type(error).__name__})"
                    ) from None
        raise AssertionError("unreachable")

    def _key_away(self, label: str) -> Unavailable:
        return Unavailable(
            "hsm_unavailable",
            f"token {self._token_label!r} does not hold {label} now (token away, or not this "
            "KMC's; `kmc init` creates a missing storage key)",
        )

    # -- storage -----------------------------------------------------------------------------

    def _storage_key(self, session: Any) -> Any:
        try:
            return session.get_key(
                object_class=ObjectClass.SECRET_KEY, key_type=KeyType.AES, label=STORAGE_LABEL
            )
        except p11.NoSuchKey:
            raise self._key_away(STORAGE_LABEL) from None

    def _has_secret_key(self, label: str) -> bool:
        def find(session: Any) -> bool:
            return bool(
                list(
                    session.get_objects(
                        {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.SECRET_KEY}
                    )
                )
            )

        return self._run(find)

    def has_storage_key(self) -> bool:
        return self._has_secret_key(STORAGE_LABEL)

    def ensure_storage_key(self) -> bool:
        """Create the AES-256 storage key and the session HMAC key on the token unless they are
        there; True if the storage key was created."""
        if not self._has_secret_key(SESSION_LABEL):
            self._run(
                lambda session: session.generate_key(
                    KeyType.GENERIC_SECRET,
                    256,
                    label=SESSION_LABEL,
                    store=True,
                    template={**_NEVER_OUT, Attribute.SIGN: True, Attribute.VERIFY: True},
                )
            )
        if self.has_storage_key():
            return False

        def create(session: Any) -> None:
            session.generate_key(
                KeyType.AES,
                256,
                label=STORAGE_LABEL,
                store=True,
                template={**_NEVER_OUT, Attribute.WRAP: True, Attribute.UNWRAP: True},
            )

        self._run(create)
        return True

    def session_secret(self) -> bytes | None:
        """HMAC-SHA256 on the token of a fixed label: every node on this token gets the same
        secret and none is stored anywhere; None before `kmc init` created the HMAC key."""

        def derive(session: Any) -> bytes | None:
            try:
                key = session.get_key(
                    object_class=ObjectClass.SECRET_KEY,
                    key_type=KeyType.GENERIC_SECRET,
                    label=SESSION_LABEL,
                )
            except p11.NoSuchKey:
                return None
            return bytes(key.sign(_SESSION_MESSAGE, mechanism=Mechanism.SHA256_HMAC))

        return self._run(derive)

    def seal(self, secret: bytes, identity: bytes) -> bytes:
        body = _identity_tag(identity) + len(secret).to_bytes(2, "big") + secret
        body += bytes(-len(body) % 8)

        def wrap(session: Any) -> bytes:
            value = session.create_object(
                {
                    **_READABLE,
                    Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET,
                    Attribute.VALUE: body,
                }
            )
            try:
                wrapped: bytes = self._storage_key(session).wrap_key(value, mechanism=self._wrap)
            finally:
                value.destroy()
            return wrapped

        return self._format + self._run(wrap)

    def sealed_here(self, sealed: bytes) -> bool:
        return sealed[:1] in _UNWRAPS

    def open(self, sealed: bytes, identity: bytes) -> bytes:
        if len(sealed) < 1 + 24 or sealed[:1] not in _UNWRAPS:
            raise KeyStoreError("sealed value has an unknown format")
        mechanism = _UNWRAPS[sealed[:1]]

        def unwrap(session: Any) -> bytes:
            try:
                value = self._storage_key(session).unwrap_key(
                    ObjectClass.SECRET_KEY,
                    KeyType.GENERIC_SECRET,
                    sealed[1:],
                    mechanism=mechanism,
                    store=False,
                    template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True},
                )
            # SoftHSM2 answers a blob whose integrity check fails with CKR_GENERAL_ERROR.
            except (
                p11.WrappedKeyInvalid,
                p11.EncryptedDataInvalid,
                p11.WrappedKeyLenRange,
                p11.GeneralError,
            ):
                raise KeyStoreError(
                    "sealed value does not open under this storage key and identity"
                ) from None
            try:
                body: bytes = value[Attribute.VALUE]
            finally:
                value.destroy()
            return body

        body = self._run(unwrap)
        tag, length = body[:_TAG_BYTES], int.from_bytes(body[_TAG_BYTES : _TAG_BYTES + 2], "big")
        secret = body[_TAG_BYTES + 2 : _TAG_BYTES + 2 + length]
        if not hmac.compare_digest(tag, _identity_tag(identity)) or len(secret) != length:
            raise KeyStoreError("sealed value does not open under this storage key and identity")
        return secret

    def generate_secret(
        self, length: int, identity: bytes, check: Callable[[bytes], bytes]
    ) -> tuple[bytes, bytes]:
        material = self._run(lambda session: bytes(session.generate_random(length * 8)))
        return self.seal(material, identity), check(material)

    # -- PKI keys ----------------------------------------------------------------------------

    def has_signing_key(self, name: str) -> bool:
        label = signing_label(name)
        return self._run(
            lambda session: bool(
                list(
                    session.get_objects(
                        {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.PRIVATE_KEY}
                    )
                )
            )
        )

    def create_signing_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        label = signing_label(name)
        if self.has_signing_key(name):
            raise KeyStoreError(
                f"token {self._token_label!r} already holds a key {label}: "
                "`kmc hsm init --reuse-keys` certifies the keys it holds"
            )

        def generate(session: Any) -> ec.EllipticCurvePublicKey:
            parameters = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")},
                local=True,
            )
            public, _ = parameters.generate_keypair(
                store=True,
                label=label,
                id=name.encode(),
                private_template={**_NEVER_OUT, Attribute.SIGN: True, Attribute.DERIVE: False},
            )
            return _public_key(public[Attribute.EC_POINT])

        return TokenSigningKey(self, label, self._run(generate))

    def import_signing_key(
        self, name: str, key: ec.EllipticCurvePrivateKey
    ) -> ec.EllipticCurvePrivateKey:
        """Put a software P-384 key on the token (`kmc keystore migrate`) as a sensitive,
        non-extractable private key beside its public key. The token marks it neither local nor
        always sensitive nor never extractable: it was made outside (docs/keys.md)."""
        label = signing_label(name)
        if self.has_signing_key(name):
            raise KeyStoreError(f"token {self._token_label!r} already holds a key {label}")
        parameters = encode_named_curve_parameters("secp384r1")
        point = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        common = {
            Attribute.TOKEN: True,
            Attribute.LABEL: label,
            Attribute.ID: name.encode(),
            Attribute.KEY_TYPE: KeyType.EC,
            Attribute.EC_PARAMS: parameters,
        }

        def create(session: Any) -> None:
            # A public half left by an interrupted import goes first; the private half is last,
            # so `has_signing_key` is true only once both are there.
            for stray in session.get_objects(
                {Attribute.LABEL: label, Attribute.CLASS: ObjectClass.PUBLIC_KEY}
            ):
                stray.destroy()
            session.create_object(
                {
                    **common,
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                    Attribute.EC_POINT: b"\x04" + bytes([len(point)]) + point,
                    Attribute.VERIFY: True,
                }
            )
            session.create_object(
                {
                    **common,
                    **_NEVER_OUT,
                    Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                    Attribute.PRIVATE: True,
                    Attribute.VALUE: key.private_numbers().private_value.to_bytes(
                        _COORDINATE, "big"
                    ),
                    Attribute.SIGN: True,
                    Attribute.DERIVE: False,
                }
            )

        self._run(create)
        return TokenSigningKey(self, label, key.public_key())

    def signing_key(self, name: str) -> ec.EllipticCurvePrivateKey:
        label = signing_label(name)

        def find(session: Any) -> ec.EllipticCurvePublicKey:
            try:
                public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=label)
            except p11.NoSuchKey:
                raise KeyStoreError(
                    f"token {self._token_label!r} has no key {label}: run `kmc init`"
                ) from None
            return _public_key(public[Attribute.EC_POINT])

        return TokenSigningKey(self, label, self._run(find))

    def sign_digest(self, label: str, digest: bytes) -> bytes:
        def sign(session: Any) -> bytes:
            try:
                key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=label)
            except p11.NoSuchKey:
                raise self._key_away(label) from None
            signature: bytes = key.sign(digest, mechanism=Mechanism.ECDSA)
            return signature

        return self._run(sign)

    # -- EKLF key agreement ------------------------------------------------------------------

    def agree(self, peer: ec.EllipticCurvePublicKey) -> tuple[ec.EllipticCurvePublicKey, bytes]:
        """Ephemeral key pair and ECDH (CKD_NULL) on the token; Z comes out for the X9.63 KDF."""
        point = peer.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

        def derive(session: Any) -> tuple[ec.EllipticCurvePublicKey, bytes]:
            parameters = session.create_domain_parameters(
                KeyType.EC,
                {Attribute.EC_PARAMS: encode_named_curve_parameters("secp384r1")},
                local=True,
            )
            public, private = parameters.generate_keypair(
                store=False, private_template={**_NEVER_OUT, Attribute.DERIVE: True}
            )
            try:
                shared = private.derive_key(
                    KeyType.GENERIC_SECRET,
                    _CURVE.key_size,
                    mechanism_param=(KDF.NULL, None, point),
                    template=_READABLE,
                )
                try:
                    secret: bytes = shared[Attribute.VALUE]
                finally:
                    shared.destroy()
                return _public_key(public[Attribute.EC_POINT]), secret
            finally:
                private.destroy()
                public.destroy()

        return self._run(derive)

    # -- status ------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        def look(session: Any) -> dict[str, Any]:
            token = session.token
            objects = []
            for obj in session.get_objects({Attribute.TOKEN: True}):
                label = obj[Attribute.LABEL]
                if not label.startswith("kmc-"):
                    continue
                entry: dict[str, Any] = {"label": label, "class": obj.object_class.name}
                if obj.object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.SECRET_KEY):
                    entry["sensitive"] = bool(obj[Attribute.SENSITIVE])
                    entry["extractable"] = bool(obj[Attribute.EXTRACTABLE])
                    objects.append(entry)
            mechanisms = set(session.token.slot.get_mechanisms())
            return {
                "keystore": self.kind,
                "module": self._module,
                "token": {
                    "label": token.label,
                    "manufacturer": token.manufacturer_id,
                    "model": token.model,
                    "serial": token.serial.decode(errors="replace")
                    if isinstance(token.serial, bytes)
                    else str(token.serial),
                },
                "keys": sorted(objects, key=lambda o: o["label"]),
                "on_token": ["sign", "seal", "open", "generate (random)", "ecdh"],
                "in_process": ["kdf (X9.63 SHA-384)", "wrap for the SM", "kcv"],
                "ecdsa_sha384_on_token": Mechanism.ECDSA_SHA384 in mechanisms,
            }

        return self._run(look)
