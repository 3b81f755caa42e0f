"""Building blocks every `kmc` command group uses: error reporting, actors, JSON output."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app

from kmc import create_app
from kmc.accounts import service as accounts
from kmc.database import db
from kmc.errors import Forbidden, KMCError, PolicyRefusal
from kmc.keystore import KeyStoreError
from sts_token.command_line import OneLineErrorGroup
from sts_token.command_line import json_option as shared_json_option


class KmcCommand(click.Command):
    """Runs inside the KMC app context (built on first use, so `--help` needs no instance); a
    failure rolls the session back and is reported by `KmcGroup`, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        root = ctx.find_root()
        if not isinstance(root.obj, Flask):
            root.obj = create_app()
        with root.obj.app_context():
            try:
                return super().invoke(ctx)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except Exception:
                db.session.rollback()
                raise


class KmcGroup(OneLineErrorGroup):
    """A command group whose commands (and subgroups) are KmcCommands. As the root (`kmc`) it
    reports failures in the one refusal format of `sts_token.command_line`: a KMCError as
    `kmc: <reason>: <message>` (exit 1), a KeyStoreError with reason `keystore`, a usage error
    as `kmc: usage: ...` (exit 2), anything else as `kmc: internal_error: ...` (KMC_DEBUG=1
    shows the traceback to a developer). Under `--json` a refusal is a JSON object on stdout."""

    command_class = KmcCommand
    group_class = type  # subgroups are KmcGroups too
    program = "kmc"
    refusals = (KMCError, KeyStoreError)
    debug_variable = "KMC_DEBUG"

    def reason(self, error: Exception) -> str:
        return "keystore" if isinstance(error, KeyStoreError) else super().reason(error)


def emit(data: Any, as_json: bool, text: str | Callable[[], str]) -> None:
    click.echo(
        json.dumps(data, indent=2, default=str) if as_json else (text() if callable(text) else text)
    )


def resolve_actor(as_user: str | None, roles: tuple[str, ...]) -> str:
    """The account a state-changing command acts as (see docs/architecture.md, "Actors")."""
    if as_user:
        user = accounts.find_user(as_user)
        if not user.active:
            raise Forbidden("inactive_user", f"user {user.username} is disabled")
        if roles and user.role not in roles:
            raise Forbidden("forbidden", f"user {user.username} ({user.role}) may not do this")
        return user.username
    if current_app.config["KMC_MODE"] == "live":
        raise PolicyRefusal("actor_required", "a live KMC records who acted: pass --as USERNAME")
    return system_actor()


def system_actor() -> str:
    """The shell user, as recorded when no account acts (test mode, or `kmc init`)."""
    return f"cli:{getpass.getuser()}"


def acting(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Adds `--as USERNAME` and passes the resolved actor name as `actor`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, as_user: str | None = None, **kwargs: Any) -> Any:
            return command(*args, actor=resolve_actor(as_user, roles), **kwargs)

        wrapper.__name__ = command.__name__
        wrapper.__doc__ = command.__doc__
        return click.option(
            "--as", "as_user", metavar="USERNAME", help="Account to record as the actor."
        )(wrapper)

    return decorate


json_option = shared_json_option("Machine-readable JSON output.")
