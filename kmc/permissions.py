"""Who may do what, declared once: the roles, the permissions, and the caller of a use case.

Routes declare the permission they need (`kmc.access.allow`), CLI commands the same
(`kmc.command_line.acting`), and services ask `caller.require(...)` before they act, so a rule
holds whichever front door is used. A role is a set of permissions (after pypi/warehouse's
`authnz/_permissions.py`); scoping within a permission (a manufacturer sees and revokes only its
own SMs) stays in the service that owns the objects. Pure: no Flask, no database.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from kmc.errors import Forbidden

ADMIN = "admin"
OPERATOR = "operator"
MANUFACTURER = "manufacturer"
AUDITOR = "auditor"
ROLES = (ADMIN, OPERATOR, MANUFACTURER, AUDITOR)  # the roles an account may have
# Not an account: an SM asking for its own keys online, authenticated by its request's signature.
SECURITY_MODULE = "security-module"


class Permission(enum.StrEnum):
    OWN_ACCOUNT = "own-account"  # home page, own password, logout, whoami
    USERS_READ = "users-read"
    USERS_MANAGE = "users-manage"  # accounts and API tokens
    AUDIT_READ = "audit-read"  # the log, its export
    AUDIT_CHECKPOINT = "audit-checkpoint"
    REGISTRY_READ = "registry-read"  # SMs, their certificates, signed exports (scoped)
    REGISTRY_INSPECT = "registry-inspect"  # a manufacturer's inspection report, its export
    MANUFACTURERS_READ = "manufacturers-read"  # the manufacturer list page
    MANUFACTURERS_MANAGE = "manufacturers-manage"
    SMS_REGISTER = "sms-register"
    SMS_CHANGE_STATE = "sms-change-state"  # approve, suspend, resume, revoke (scoped)
    KEYS_READ = "keys-read"  # supply groups, keys, approvals, expiry, key-load records
    KEYS_MANAGE = "keys-manage"  # supply groups, keys, authorisations, approvals
    KEYS_LOAD = "keys-load"  # VKLOADREQ in, EKLF out
    KEYS_LOAD_ONLINE = "keys-load-online"  # an SM's own VKLOADREQ in, its EKLF out
    SMS_ONLINE_KEYLOAD = "sms-online-keyload"  # let an SM load its keys online, or stop it
    MASTER_KEY_CUSTODY = "master-key-custody"  # split the master key, enter a share, seal


_EVERYONE = frozenset({Permission.OWN_ACCOUNT, Permission.REGISTRY_READ})
_KEY_READING = frozenset({Permission.KEYS_READ, Permission.MANUFACTURERS_READ})
ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    ADMIN: frozenset(Permission),
    OPERATOR: _EVERYONE
    | _KEY_READING
    | {
        Permission.KEYS_MANAGE,
        Permission.KEYS_LOAD,
        Permission.MASTER_KEY_CUSTODY,
        Permission.SMS_CHANGE_STATE,
        Permission.SMS_ONLINE_KEYLOAD,
        Permission.AUDIT_CHECKPOINT,
    },
    MANUFACTURER: _EVERYONE | {Permission.SMS_REGISTER, Permission.SMS_CHANGE_STATE},
    AUDITOR: _EVERYONE
    | _KEY_READING
    | {Permission.USERS_READ, Permission.AUDIT_READ, Permission.REGISTRY_INSPECT},
    SECURITY_MODULE: frozenset({Permission.KEYS_LOAD_ONLINE}),
}


# What a refusal says where a plain "may not" would leave the caller guessing who may.
_REFUSALS = {
    Permission.SMS_REGISTER: "only manufacturers and admins register SMs",
    Permission.USERS_MANAGE: "only admins manage accounts and API tokens",
    Permission.MANUFACTURERS_MANAGE: "only admins add or edit manufacturers",
    Permission.SMS_ONLINE_KEYLOAD: "only operators and admins switch online key loading",
    Permission.REGISTRY_INSPECT: "only auditors and admins read inspection reports",
}


def roles_with(permission: Permission) -> frozenset[str]:
    """Every role that holds `permission` (what a route's declaration resolves to)."""
    return frozenset(role for role, granted in ROLE_PERMISSIONS.items() if permission in granted)


class Account(Protocol):
    username: str
    role: str
    id_man: str | None


@dataclass(frozen=True)
class Caller:
    """Who is acting: the audit name, the role, for a manufacturer its ID_man, and for an SM
    loading its own keys online its SMID."""

    name: str
    role: str
    id_man: str | None = None
    smid: str | None = None

    @classmethod
    def of(cls, user: Account) -> Caller:
        return cls(user.username, user.role, user.id_man)

    @classmethod
    def security_module(cls, smid: str) -> Caller:
        """The SM `smid` as the caller of its own online request (audited as `sm:SMID`); the
        service admits it only once the request's signature verifies under that SM's key."""
        return cls(f"sm:{smid}", SECURITY_MODULE, smid=smid)

    @property
    def is_security_module(self) -> bool:
        return self.role == SECURITY_MODULE

    @property
    def is_manufacturer(self) -> bool:
        return self.role == MANUFACTURER

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())

    def require(self, permission: Permission) -> None:
        """Refuse (403 `forbidden`) unless the caller's role holds `permission`."""
        if not self.may(permission):
            message = _REFUSALS.get(permission, f"the {self.role} role may not do this")
            raise Forbidden("forbidden", f"{message} ({permission})")
