"""Building blocks every `kmc` command group uses: error reporting, actors, JSON output."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app

from kmc.database import db
from kmc.errors import Forbidden, PolicyRefusal
from kmc.permissions import ADMIN, Caller
from sts_token.command_line import json_option as shared_json_option


class KmcCommand(click.Command):
    """Runs inside the KMC app context (built on first use, so `--help` needs no instance); a
    failure rolls the session back and is reported by `KmcGroup`, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        root = ctx.find_root()
        if not isinstance(root.obj, Flask):
            root.obj = root.command.app_factory()  # type: ignore[attr-defined]
        with root.obj.app_context():
            try:
                return super().invoke(ctx)
            except (click.ClickException, click.exceptions.Exit, click.Abort):
                raise
            except Exception:
                db.session.rollback()
                raise


class KmcGroup(click.Group):
    """A command group whose commands (and subgroups) run in the KMC app (`KmcCommand`);
    the root group (`kmc.cli.LazyGroup`) reports their failures."""

    command_class = KmcCommand
    group_class = type  # subgroups are KmcGroups too


def emit(data: Any, as_json: bool, text: str | Callable[[], str]) -> None:
    click.echo(
        json.dumps(data, indent=2, default=str) if as_json else (text() if callable(text) else text)
    )


def resolve_actor(as_user: str | None, roles: tuple[str, ...]) -> str:
    """The account a state-changing command acts as (see docs/architecture.md, "Actors")."""
    if as_user:
        user = current_app.extensions["kmc.named_user"](as_user)
        if not user.active:
            raise Forbidden("inactive_user", f"user {user.username} is disabled")
        if roles and user.role not in roles:
            raise Forbidden("forbidden", f"user {user.username} ({user.role}) may not do this")
        return user.username
    if current_app.config["KMC_MODE"] == "live":
        raise PolicyRefusal("actor_required", "a live KMC records who acted: pass --as USERNAME")
    return system_actor()


def caller_for(actor: str) -> Caller:
    """The caller behind a resolved actor; the shell user (test mode only) acts as an admin."""
    if actor.startswith("cli:"):
        return Caller(actor, ADMIN)
    return Caller.of(current_app.extensions["kmc.named_user"](actor))


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
