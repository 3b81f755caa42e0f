"""`kmc user`: accounts of people and machine clients, and their API tokens."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from kmc.accounts import service as accounts
from kmc.command_line import NAME, KmcGroup, acting, emit, json_option
from kmc.errors import InvalidInput
from kmc.permissions import ROLES, Caller, Permission


@click.group(cls=KmcGroup)
def user() -> None:
    """Accounts of people and machine clients."""


@user.command("create")
@click.option("--username", required=True, type=NAME)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option(
    "--manufacturer", "id_man", metavar="ID_MAN", help="Binds a manufacturer account to its ID_man."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@json_option
@acting(Permission.USERS_MANAGE)
def user_create(
    caller: Caller,
    username: str,
    role: str,
    id_man: str | None,
    password_stdin: bool,
    as_json: bool,
) -> None:
    """Create an account (without --password-stdin a one-time password is generated and shown once)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInput("empty_password", "no password on stdin")
        must_change = False
    else:
        password, must_change = accounts.generate_password(), True
    created = accounts.create_user(
        caller, username, role, password, id_man, must_change=must_change
    )
    data = {"username": created.username, "role": created.role, "id_man": created.id_man}
    if not password_stdin:
        data["one_time_password"] = password
    emit(
        data,
        as_json,
        lambda: (
            f"created {created.username} ({created.role})"
            + ("" if password_stdin else f"; one-time password: {password}")
        ),
    )


@user.command("list")
@json_option
def user_list(as_json: bool) -> None:
    """List accounts (with failed logins that still count, and any wait they impose)."""
    standings = accounts.login_standings()
    none = accounts.Standing(0, None)
    rows = [
        {
            "username": u.username,
            "role": u.role,
            "id_man": u.id_man,
            "active": u.active,
            "failed_logins": standings.get(u.username, none).failures,
            "throttled_until": _iso(standings.get(u.username, none).throttled_until),
        }
        for u in accounts.list_users()
    ]
    emit(
        rows,
        as_json,
        lambda: "\n".join(
            f"{r['username']:<24} {r['role']:<12} {r['id_man'] or '':<6} {'active' if r['active'] else 'disabled'}"
            + (f" {r['failed_logins']} failed logins" if r["failed_logins"] else "")
            + (f", waits until {r['throttled_until']}" if r["throttled_until"] else "")
            for r in rows
        ),
    )


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


@user.command("unlock")
@click.option("--username", required=True)
@json_option
@acting(Permission.USERS_MANAGE)
def user_unlock(caller: Caller, username: str, as_json: bool) -> None:
    """Clear an account's back-off after failed logins, so it may log in at once."""
    before = accounts.unlock(caller, username)
    emit(
        {"username": username, "failed_logins": before.failures},
        as_json,
        f"cleared the back-off of {username} ({before.failures} failed logins)",
    )


@user.command("reset-password")
@click.option("--username", required=True, type=NAME)
@json_option
@acting(Permission.USERS_MANAGE)
def user_reset_password(caller: Caller, username: str, as_json: bool) -> None:
    """Replace a password by a one-time password, shown once; its change is forced at next login."""
    reset = accounts.reset_password(caller, username)
    emit(
        {"username": reset.user.username, "one_time_password": reset.password},
        as_json,
        lambda: f"reset the password of {reset.user.username}; one-time password: {reset.password}",
    )


@user.command("set-role")
@click.option("--username", required=True, type=NAME)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option(
    "--manufacturer", "id_man", metavar="ID_MAN", help="Binds a manufacturer account to its ID_man."
)
@json_option
@acting(Permission.USERS_MANAGE)
def user_set_role(
    caller: Caller, username: str, role: str, id_man: str | None, as_json: bool
) -> None:
    """Change an account's role (an admin cannot demote themselves nor the last active admin)."""
    before = accounts.find_user(username).role
    changed = accounts.set_role(caller, username, role, id_man)
    emit(
        {"username": changed.username, "role": changed.role, "id_man": changed.id_man},
        as_json,
        f"{changed.username} is now {changed.role} (was {before})",
    )


@user.command("token")
@click.option("--username", required=True, type=NAME, help="The account the token acts as.")
@click.option(
    "--name", required=True, type=NAME, help="What the token is for (e.g. 'upload script')."
)
@json_option
@acting(Permission.USERS_MANAGE)
def user_token(caller: Caller, username: str, name: str, as_json: bool) -> None:
    """Create an API bearer token; it is printed once and stored only hashed."""
    issued = accounts.create_token(caller, username, name)
    emit(
        {"id": issued.token.id, "username": username, "token": issued.secret},
        as_json,
        issued.secret,
    )
