"""Permissions are declared once and checked by the services, whichever front door calls them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from factories.callers import caller
from factories.keys import SGC
from factories.registry import new_device
from key_load import service as key_load
from kmc.accounts import service as accounts
from kmc.audit.models import AuditEntry
from kmc.database import db
from kmc.errors import Forbidden, NotFound
from kmc.permissions import (
    ROLE_PERMISSIONS,
    ROLES,
    SECURITY_MODULE,
    Caller,
    Permission,
    roles_with,
)
from sm_registry import service as registry
from vending_keys import service as keys
from vending_keys.domain import KeySpec


def _audit_entries() -> int:
    return db.session.scalar(select(func.count()).select_from(AuditEntry)) or 0


def _spec() -> KeySpec:
    return KeySpec.from_input(
        sgc=SGC,
        krn=1,
        kt=1,
        dkga="04",
        eas=["07"],
        base_date=2014,
        ken=255,
        act=None,
        exp=None,
        refresh_days=None,
        now=dt.datetime.now(dt.UTC),
    )


def test_every_role_holds_a_declared_set_and_admin_holds_every_permission():
    # The accounts' roles, and the role of an SM calling for its own keys (no account has it).
    assert set(ROLE_PERMISSIONS) == {*ROLES, SECURITY_MODULE}
    assert SECURITY_MODULE not in ROLES
    assert ROLE_PERMISSIONS[SECURITY_MODULE] == {Permission.KEYS_LOAD_ONLINE}
    assert ROLE_PERMISSIONS["admin"] == frozenset(Permission)
    assert all(Permission.OWN_ACCOUNT in ROLE_PERMISSIONS[role] for role in ROLES)


def test_roles_with_a_permission_are_read_from_the_one_table():
    assert roles_with(Permission.KEYS_MANAGE) == {"admin", "operator"}
    assert roles_with(Permission.SMS_REGISTER) == {"admin", "manufacturer"}
    assert roles_with(Permission.AUDIT_READ) == {"admin", "auditor"}


@pytest.mark.parametrize(
    ("who", "call"),
    [
        ("auditor1", lambda who: keys.propose_key(who, _spec())),
        ("maker1", lambda who: keys.add_supply_group(who, "123456", "Group")),
        ("operator1", lambda who: accounts.create_token(who, "auditor1", "not mine to make")),
        ("auditor1", lambda who: accounts.set_active(who, "operator1", False)),
        ("operator1", lambda who: registry.create_manufacturer(who, "9F9F", "Not allowed")),
        ("auditor1", lambda who: key_load.process_request(who, b"\x30\x00")),
        ("auditor1", lambda who: registry.change_state(who, "1", "suspend", "no")),
    ],
    ids=["keys", "supply-group", "token", "account", "manufacturer", "keyload", "sm-state"],
)
def test_a_service_refuses_a_caller_whose_role_lacks_the_permission(app, who, call):
    with app.app_context():
        before = _audit_entries()
        with pytest.raises(Forbidden, match=r"\(([a-z-]+)\)$"):
            call(caller(who))
        assert _audit_entries() == before


def test_a_role_unknown_to_the_table_may_do_nothing(app):
    with app.app_context(), pytest.raises(Forbidden):
        keys.add_supply_group(Caller("ghost", "superuser"), "123456", "Group")


def test_the_cli_checks_the_acting_accounts_permission(kmc):
    refused = kmc("sgc", "add", "--sgc", "123456", "--name", "G", "--as", "auditor1")
    assert refused.exit_code == 1
    assert refused.output.startswith("kmc: forbidden: user auditor1 (auditor) may not do this")


def test_a_manufacturer_may_revoke_only_its_own_sm(app):
    with app.app_context():
        new_device(app, "4242")
        with pytest.raises(Forbidden, match="may not suspend"):
            registry.change_state(caller("maker1"), "4242", "suspend", "not ours to suspend")
        with pytest.raises(NotFound, match="no SM with SMID 4242"):
            registry.change_state(caller("maker2"), "4242", "revoke", "another maker's SM")
