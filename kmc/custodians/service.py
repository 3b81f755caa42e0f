"""Use cases of the custodians: split the master key, enter a share, seal; each one audited."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import current_app

from kmc import sealing
from kmc.audit import service as audit
from kmc.database import audited_refusal, use_case
from kmc.errors import Conflict, KMCError
from kmc.keystore import SoftwareKeyStore
from kmc.permissions import Caller, Permission

_OBJECT = ("master_key", "storage")


@dataclass(frozen=True)
class Split:
    custody: sealing.Custody
    shares: list[str]  # handed out once by the caller, never kept
    initialised: Any  # what the instance's initialisation reported

    def __repr__(self) -> str:
        return f"Split({self.custody.threshold} of {self.custody.shares}, shares hidden)"


def not_split() -> Conflict:
    return Conflict("not_split", "this KMC's master key is not split among custodians")


def _vault() -> sealing.Vault:
    vault = sealing.vault_of(current_app)
    if vault is None:
        raise not_split()
    return vault


def status() -> sealing.Progress | None:
    """The vault's state, or None on a KMC without custodians."""
    vault = sealing.vault_of(current_app)
    return None if vault is None else vault.progress()


@use_case
def split_master_key(
    caller: Caller, shares: int, threshold: int, initialise: Callable[[str], Any]
) -> Split:
    """Split the master key (`master.key`, or a new one on a fresh instance) among custodians.

    The instance then keeps only the custody record; the vault of this process is opened with
    the key so `initialise` (schema, PKI, bootstrap account: the instance's `kmc init`) can run.
    The caller hands out the shares, then calls `destroy_master_key_file`.
    """
    caller.require(Permission.MASTER_KEY_CUSTODY)
    instance = current_app.config["KMC_INSTANCE"]
    if sealing.Custody.load(instance) is not None:
        raise Conflict("already_split", "the master key is already split among custodians")
    key_file = instance / sealing.MASTER_KEY_FILE
    key = key_file.read_bytes() if key_file.exists() else os.urandom(sealing.MASTER_KEY_BYTES)
    custody, mnemonics = sealing.split(key, shares, threshold)
    custody.write(instance)
    try:
        sealing.install_vault(current_app)
        _vault().open_with(key)
        current_app.extensions["kmc.keystore"] = SoftwareKeyStore.from_instance(instance)
        report = initialise(caller.name)
        audit.record(
            caller.name,
            "custodians.split",
            *_OBJECT,
            {"shares": shares, "threshold": threshold, "check_value": custody.check_value},
        )
    except BaseException:
        sealing.Custody.path(instance).unlink()
        sealing.install_vault(current_app)
        raise
    _vault().seal()  # from now on the KMC starts sealed, this process included
    current_app.extensions.pop("kmc.pki", None)
    return Split(custody, mnemonics, report)


def destroy_master_key_file() -> bool:
    """Remove `master.key` once the shares are handed out; True if there was one."""
    path = current_app.config["KMC_INSTANCE"] / sealing.MASTER_KEY_FILE
    if not path.exists():
        return False
    path.unlink()
    return True


@use_case
def enter_share(caller: Caller, share: str) -> sealing.Progress:
    """One custodian's share; audited without the share, whatever the outcome."""
    caller.require(Permission.MASTER_KEY_CUSTODY)
    vault = _vault()
    try:
        progress = vault.enter(share)
    except KMCError as refused:
        reason = refused.reason
        raise audited_refusal(
            refused,
            lambda: audit.record(caller.name, "custodians.share.refuse", *_OBJECT, {"why": reason}),
        ) from None
    audit.record(
        caller.name,
        "custodians.unseal" if not progress.sealed else "custodians.share",
        *_OBJECT,
        {"entered": progress.entered, "threshold": progress.threshold},
    )
    return progress


@use_case
def seal(caller: Caller) -> sealing.Progress:
    """Seal the KMC again: the key and any shares entered so far are wiped from memory."""
    caller.require(Permission.MASTER_KEY_CUSTODY)
    vault = _vault()
    was_sealed = vault.sealed
    vault.seal()
    audit.record(caller.name, "custodians.seal", *_OBJECT, {"was_sealed": was_sealed})
    return vault.progress()
