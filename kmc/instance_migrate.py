"""`kmc keystore migrate --to pkcs11`: a populated software KMC onto a PKCS#11 token.

One audited, resumable step (docs/keys.md, "Migrating to a token"), run with the software store
still configured and the target token named by `KMC_PKCS11_*`:

1. the PKI keys (root, issuing, keyload, audit) are imported onto the token as sensitive,
   non-extractable objects, each (imported now or by an earlier run) proved by a signature its
   certificate verifies; the
   certificates do not change, so SMs that pinned the root keep working;
2. the token's AES-256 storage key is created;
3. every vending key is re-wrapped under it in batches of `batch` keys, one transaction and one
   audit entry each, its KCV checked before and after;
4. every key is opened from the token and checked against its KCV;
5. only then the master key file (or, on a KMC split among custodians and unsealed with
   `--unseal`, its custody record: the shares open nothing any more) and the sealed PKI key
   files are destroyed.

Each step skips what an earlier, interrupted run did (a PKI key already on the token and
matching its certificate, a vending key already sealed by the token), so running it again
finishes the work without doing any of it twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app

from kmc.audit import service as audit
from kmc.database import use_case
from kmc.errors import Conflict, InvalidInput
from kmc.keystore import MASTER_KEY_FILE, SIGNING_KEYS, KeyStore
from kmc.keystore.pkcs11 import STORAGE_LABEL, Pkcs11KeyStore, signing_label
from kmc.pki import PKI_DIR, KmcPki
from kmc.sealing import CUSTODY_FILE
from vending_keys import service as vending_keys

_PROOF = b"kmc keystore migrate: the imported key signs"


@dataclass
class MigrationReport:
    token_label: str
    signing_keys: dict[str, str]  # name: "imported" or "already on the token"
    keys_rewrapped: int = 0
    keys_verified: int = 0
    destroyed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"keystore": "pkcs11", **asdict(self)}


@dataclass
class Migration:
    """The checked plan of one run: refused at `prepare` when the configuration is wrong."""

    source: KeyStore
    target: Pkcs11KeyStore
    pki: KmcPki
    pending: list[int]

    @classmethod
    def prepare(cls) -> Migration:
        config = current_app.config
        if config["KMC_KEYSTORE"] != "software":
            raise InvalidInput(
                "not_software",
                f"KMC_KEYSTORE is {config['KMC_KEYSTORE']}: migrate runs on the software store "
                "it moves from, with KMC_PKCS11_* naming the target token",
            )
        instance = Path(config["KMC_INSTANCE"])
        source = current_app.extensions.get("kmc.keystore")
        if source is None or not KmcPki.exists():
            raise Conflict(
                "nothing_to_migrate",
                f"{instance} has no master key or no PKI: nothing to migrate "
                "(already migrated? then run with KMC_KEYSTORE=pkcs11)",
            )
        pki = KmcPki.load(source)
        target = Pkcs11KeyStore.from_settings(config)
        _refuse_foreign_keys(target, pki)
        return cls(source, target, pki, vending_keys.keys_to_rewrap(target))

    def run(self, actor: str, batch: int, advance: Callable[[int], None]) -> MigrationReport:
        report = MigrationReport(
            current_app.config["KMC_PKCS11_TOKEN"], self._import_signing_keys(actor)
        )
        if self.target.ensure_storage_key():
            _record(actor, "keystore.storage_key", STORAGE_LABEL, {"created": True})
        for start in range(0, len(self.pending), batch):
            ids = self.pending[start : start + batch]
            report.keys_rewrapped += vending_keys.rewrap_keys(actor, self.source, self.target, ids)
            advance(len(ids))
        report.keys_verified = vending_keys.verify_sealed_keys(self.target)
        instance = Path(current_app.config["KMC_INSTANCE"])
        files = [instance / PKI_DIR / f"{name}.key.sealed" for name in SIGNING_KEYS]
        files += [instance / MASTER_KEY_FILE, instance / CUSTODY_FILE]
        report.destroyed = [str(f.relative_to(instance)) for f in files if f.exists()]
        _record(actor, "keystore.migrate", current_app.config["KMC_PKCS11_TOKEN"], report.as_dict())
        for path in files:
            _destroy(path)
        return report

    def _import_signing_keys(self, actor: str) -> dict[str, str]:
        done = {}
        for name in SIGNING_KEYS:  # root first: `_refuse_foreign_keys` relies on it
            signer = self.pki.signer(name)
            if self.target.has_signing_key(name):
                done[name] = "already on the token"
                key = self.target.signing_key(name)
            else:
                key = self.target.import_signing_key(name, signer.key)
                done[name] = "imported"
            # The token's private key, not only its public half, must be the certified one.
            if not signer.verify(_PROOF, key.sign(_PROOF, ec.ECDSA(hashes.SHA384()))):
                raise Conflict(
                    "import_failed", f"the {name} key on the token does not sign for {name}.pem"
                )
            if done[name] == "already on the token":
                continue
            _record(
                actor,
                "keystore.import",
                signing_label(name),
                {"certificate_sha256": signer.certificate.fingerprint(hashes.SHA256()).hex()},
            )
        return done


def _refuse_foreign_keys(target: Pkcs11KeyStore, pki: KmcPki) -> None:
    """A token whose KMC keys are not this KMC's (their public keys are not the ones its
    certificates name), or that holds KMC keys but not this KMC's root, is refused."""
    labels = {entry["label"] for entry in target.describe()["keys"]}
    if not labels:
        return
    for name in SIGNING_KEYS:
        if signing_label(name) not in labels:
            continue
        if target.signing_key(name).public_key() != pki.signer(name).key.public_key():
            raise Conflict(
                "token_holds_other_keys",
                f"token {target.token_label!r} holds a {signing_label(name)} that this KMC's "
                f"{name}.pem does not certify (another KMC's keys): use an empty token",
            )
    if signing_label("root") not in labels:
        raise Conflict(
            "token_holds_other_keys",
            f"token {target.token_label!r} holds KMC keys ({', '.join(sorted(labels))}) but "
            "not this KMC's root: use an empty token",
        )


@use_case
def _record(actor: str, action: str, object_id: str, details: dict[str, Any]) -> None:
    audit.record(actor, action, "key_store", object_id, details)


def _destroy(path: Path) -> None:
    """Overwrite the file with zeros, flush it to the disk, then remove it. (A copy-on-write
    or journalling file system, or a backup, may still hold the old blocks: docs/keys.md.)"""
    if not path.exists():
        return
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.write(bytes(size))
        handle.flush()
        os.fsync(handle.fileno())
    path.unlink()
