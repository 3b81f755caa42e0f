"""Whether the software key store's master key is open: where the store gets it, and when it may.

Three cases (docs/keys.md, "Custodians and sealing"):

- a test KMC, and a KMC without custodians, reads `<instance>/master.key` (a live KMC refuses
  that: `plain_software_keystore`, naming both ways out);
- a KMC whose master key is split among custodians (`kmc custodians init`) keeps only
  `<instance>/custodians.json` (threshold, the split's public identifier and a check value, never
  a share) and starts **sealed**: every key operation is refused as `sealed` (503) until
  `threshold` custodians have entered their shares into the running KMC;
- the reconstructed key then lives in a `Vault`: anonymous shared memory mapped by the process
  that built the app, before a server forks its workers, so a share entered through any worker
  counts for all of them and `kmc seal` through any worker seals all of them. Nothing of it
  touches the disk; another process (a CLI command, another node) has its own, sealed, vault.

Shamir secret sharing is SLIP-39's (`shamir-mnemonic`, the reference implementation by
SatoshiLabs): shares are words with a checksum, so a mistyped share is refused at once, and the
shares of one split carry one identifier, so a share of another split is refused before it is
combined. Core: imports no feature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import mmap
import multiprocessing
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import shamir_mnemonic
from flask import Flask, current_app, has_app_context
from shamir_mnemonic.share import Share

from kmc.config import write_private_file
from kmc.errors import Conflict, InvalidInput, KeyStoreError, PolicyRefusal, Unavailable

MASTER_KEY_FILE = "master.key"
CUSTODY_FILE = "custodians.json"
VAULT = "kmc.vault"
MASTER_KEY_BYTES = 32
MAX_SHARES = 16  # SLIP-39: at most 16 members in a group
_CHECK_LABEL = b"STS KMC storage master key check value"
_SLOT = 512  # a SLIP-39 share of a 256-bit secret is 33 words, under 300 characters
_SEALED, _OPEN = 0, 1
# Shared memory layout: state (1) | master key (32) | shares entered (1) | slots (2 + _SLOT each)
_KEY_AT, _COUNT_AT, _SLOTS_AT = 1, 1 + MASTER_KEY_BYTES, 2 + MASTER_KEY_BYTES


def check_value(master_key: bytes) -> str:
    """What lets the KMC recognise its master key without keeping it (like a KCV: one-way)."""
    return hmac.new(master_key, _CHECK_LABEL, hashlib.sha256).hexdigest()


def plain_store_refusal() -> PolicyRefusal:
    return PolicyRefusal(
        "plain_software_keystore",
        "a live KMC does not run on the plain software key store: use an HSM "
        "(KMC_KEYSTORE=pkcs11) or split the master key among custodians (kmc custodians init)",
    )


def sealed_refusal(custody: Custody) -> Unavailable:
    return Unavailable(
        "sealed",
        f"the KMC is sealed: {custody.threshold} of its {custody.shares} custodians must enter "
        "their master-key shares (the Custodians page, or kmc unseal)",
    )


@dataclass(frozen=True)
class Custody:
    """What the instance keeps of a split master key: never a share, never the key."""

    shares: int
    threshold: int
    identifier: int  # the SLIP-39 split's identifier, written in every share (not secret)
    check_value: str

    @staticmethod
    def path(instance: Path) -> Path:
        return instance / CUSTODY_FILE

    @classmethod
    def load(cls, instance: Path) -> Custody | None:
        path = cls.path(instance)
        if not path.exists():
            return None
        return cls(**json.loads(path.read_text()))

    def write(self, instance: Path) -> None:
        write_private_file(self.path(instance), json.dumps(asdict(self), indent=2).encode())


def _normalise(share: str) -> str:
    return " ".join(share.lower().split())


@dataclass(frozen=True)
class Progress:
    sealed: bool
    entered: int  # shares held towards the next unsealing (0 once open)
    threshold: int
    shares: int


class Vault:
    """The master key of a split-knowledge KMC, shared by every process forked after it is made.

    Shares entered towards an unsealing wait here too (never on disk); a wrong combination
    discards all of them, since which share was wrong cannot be told (nor must be).
    """

    def __init__(self, custody: Custody) -> None:
        self.custody = custody
        self._memory = mmap.mmap(-1, _SLOTS_AT + MAX_SHARES * (2 + _SLOT), flags=mmap.MAP_SHARED)
        self._lock = multiprocessing.Lock()  # a semaphore: inherited across fork, like the map

    def __repr__(self) -> str:
        return f"Vault(sealed={self.sealed})"

    @property
    def sealed(self) -> bool:
        return self._memory[0] != _OPEN

    def key(self) -> bytes:
        if self.sealed:
            raise sealed_refusal(self.custody)
        return bytes(self._memory[_KEY_AT:_COUNT_AT])

    def progress(self) -> Progress:
        entered = 0 if not self.sealed else self._memory[_COUNT_AT]
        return Progress(self.sealed, entered, self.custody.threshold, self.custody.shares)

    def _pending(self) -> list[str]:
        shares = []
        for n in range(self._memory[_COUNT_AT]):
            at = _SLOTS_AT + n * (2 + _SLOT)
            length = int.from_bytes(self._memory[at : at + 2], "big")
            shares.append(self._memory[at + 2 : at + 2 + length].decode())
        return shares

    def _wipe(self) -> None:
        self._memory[_KEY_AT:] = bytes(len(self._memory) - _KEY_AT)

    def enter(self, share: str) -> Progress:
        """Take one custodian's share; the one that reaches the threshold opens the vault.

        Refusals name what was wrong with the share, never whose it was: `invalid_share` (not
        SLIP-39 words, or a checksum that fails), `foreign_share` (a share of another split),
        `duplicate_share` (that share was already entered), `wrong_shares` (the threshold was
        reached but the shares do not rebuild this KMC's key: all are discarded).
        """
        text = _normalise(share)
        try:
            parsed = Share.from_mnemonic(text) if len(text) <= _SLOT else None
        except shamir_mnemonic.MnemonicError:
            parsed = None
        if parsed is None:
            raise InvalidInput("invalid_share", "this is not a master-key share (a word is wrong)")
        if (parsed.identifier, parsed.member_threshold) != (
            self.custody.identifier,
            self.custody.threshold,
        ):
            raise InvalidInput("foreign_share", "this share is not one of this KMC's master key")
        with self._lock:
            if not self.sealed:
                raise Conflict("unsealed", "the KMC is already unsealed")
            pending = self._pending()
            if any(Share.from_mnemonic(p).index == parsed.index for p in pending):
                raise Conflict("duplicate_share", "this share has already been entered")
            if len(pending) + 1 < self.custody.threshold:
                at = _SLOTS_AT + len(pending) * (2 + _SLOT)
                encoded = text.encode()
                self._memory[at : at + 2 + len(encoded)] = len(encoded).to_bytes(2, "big") + encoded
                self._memory[_COUNT_AT] = len(pending) + 1
                return self.progress()
            try:
                key = shamir_mnemonic.combine_mnemonics([*pending, text])
            except shamir_mnemonic.MnemonicError:
                key = b""
            if not hmac.compare_digest(check_value(key), self.custody.check_value):
                self._wipe()
                raise InvalidInput(
                    "wrong_shares",
                    "the shares entered do not rebuild this KMC's master key; all of them were "
                    "discarded: enter them again",
                )
            self.open_with(key)
            return self.progress()

    def open_with(self, key: bytes) -> None:
        """Open with the key itself (only `kmc custodians init`, which has just split it)."""
        if not hmac.compare_digest(check_value(key), self.custody.check_value):
            raise KeyStoreError("this is not the master key the custodians hold")
        self._wipe()
        self._memory[_KEY_AT:_COUNT_AT] = key
        self._memory[0] = _OPEN

    def seal(self) -> None:
        with self._lock:
            self._wipe()
            self._memory[0] = _SEALED


def split(key: bytes, shares: int, threshold: int) -> tuple[Custody, list[str]]:
    """The custody record and the shares (SLIP-39 mnemonics) of `key`, `threshold` of `shares`."""
    if not 2 <= threshold <= shares <= MAX_SHARES:
        raise InvalidInput(
            "invalid_threshold",
            f"split into 2 to {MAX_SHARES} shares with a threshold of at least 2 and at most "
            f"the number of shares (not {threshold} of {shares})",
        )
    mnemonics = shamir_mnemonic.generate_mnemonics(1, [(threshold, shares)], key)[0]
    identifier = Share.from_mnemonic(mnemonics[0]).identifier
    return Custody(shares, threshold, identifier, check_value(key)), mnemonics


def require_protected_store() -> None:
    """Refuse a live KMC on the plain software store (`kmc init`, `kmc serve`, key operations).

    Outside an app (a key store used as a library, in tests) there is no mode to enforce."""
    if not has_app_context():
        return
    config = current_app.config
    if (
        config["KMC_MODE"] == "live"
        and config["KMC_KEYSTORE"] == "software"
        and Custody.load(config["KMC_INSTANCE"]) is None
    ):
        raise plain_store_refusal()


def vault_of(app: Flask) -> Vault | None:
    """The app's vault, on a KMC whose master key is split among custodians."""
    found: Vault | None = app.extensions.get(VAULT)
    return found


def _vault_key() -> bytes:
    held = vault_of(current_app)
    if held is None:
        raise KeyStoreError("the master key is split among custodians but no vault is open")
    return held.key()


def master_key(instance: Path, *, create: bool = False) -> Callable[[], bytes]:
    """Where the software key store gets its master key: a function asked at every use.

    Custodians: the app's vault (sealed until they unseal it). Otherwise `master.key`, created if
    `create` (a live KMC refuses before creating it, and refuses every use of it).
    """
    if Custody.path(instance).exists():
        return _vault_key
    path = instance / MASTER_KEY_FILE
    if not path.exists():
        if not create:
            raise KeyStoreError(f"no storage master key at {path}: run `kmc init`")
        require_protected_store()
        write_private_file(path, os.urandom(MASTER_KEY_BYTES))
    key = path.read_bytes()
    if len(key) != MASTER_KEY_BYTES:
        raise KeyStoreError("the storage master key must be 32 bytes")

    def from_file() -> bytes:
        require_protected_store()
        return key

    return from_file


def install_vault(app: Flask) -> None:
    """Map a sealed vault if the master key is split (in the app factory: before any fork)."""
    custody = Custody.load(app.config["KMC_INSTANCE"])
    if custody is not None:
        app.extensions[VAULT] = Vault(custody)
    else:
        app.extensions.pop(VAULT, None)


def init_app(app: Flask) -> None:
    """The vault, and forgetting the loaded PKI (its private keys) whenever the vault is sealed."""
    install_vault(app)

    @app.before_request
    def _forget_keys_while_sealed() -> None:
        held = vault_of(app)
        if held is not None and held.sealed:
            app.extensions.pop("kmc.pki", None)
