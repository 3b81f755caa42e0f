"""Building blocks every `kmc` command group uses: error reporting, actors, JSON output."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from typing import Any

import click
from flask import Flask, current_app

from kmc import text
from kmc.database import db
from kmc.errors import Forbidden, InvalidInput, PolicyRefusal
from kmc.permissions import ADMIN, Caller, Permission
from sts_token.command_line import json_option as shared_json_option


class KmcCommand(click.Command):
    """Runs inside the KMC app context (built on first use, so `--help` needs no instance); a
    failure rolls the session back and is reported by `KmcGroup`, never as a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        root = ctx.find_root()
        if not isinstance(root.obj, Flask):
            names, at = [], ctx
            while at.parent is not None:
                names.append(at.info_name or "")
                at = at.parent
            command = " ".join(reversed(names))  # "init", "hsm init", "user list", ...
            root.obj = root.command.app_factory(command)  # type: ignore[attr-defined]
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


class TextParam(click.types.StringParamType):
    """An option or argument that becomes stored text (a name, a reason, a username) follows the
    text rules (kmc.text), refused as `invalid_text` like the API and the pages refuse it.
    `NAME` for names shown on pages, `FREE_TEXT` for reasons and contacts."""

    name = "text"

    def __init__(self, *, name: bool = False) -> None:
        self.for_names = name

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        what = param.get_error_hint(ctx) if param is not None and ctx is not None else "the value"
        try:
            return text.check(super().convert(value, param, ctx), what, name=self.for_names)
        except text.TextRefused as refused:
            raise InvalidInput(refused.reason, str(refused)) from None


NAME = TextParam(name=True)
FREE_TEXT = TextParam()


def emit(data: Any, as_json: bool, text: str | Callable[[], str]) -> None:
    click.echo(
        json.dumps(data, indent=2, default=str) if as_json else (text() if callable(text) else text)
    )


def resolve_caller(
    as_user: str | None, permission: Permission | None, *, live_needs_account: bool = True
) -> Caller:
    """Who a command acts as (see docs/architecture.md, "Actors"): the `--as` account, which
    must be active and hold `permission`; without `--as` the shell user, as an admin (in test
    mode, or for a read that `live_needs_account=False` marks)."""
    if as_user:
        user = current_app.extensions["kmc.named_user"](as_user)
        if not user.active:
            raise Forbidden("inactive_user", f"user {user.username} is disabled")
        caller = Caller.of(user)
        if permission is not None and not caller.may(permission):
            raise Forbidden("forbidden", f"user {user.username} ({user.role}) may not do this")
        return caller
    if live_needs_account and current_app.config["KMC_MODE"] == "live":
        raise PolicyRefusal("actor_required", "a live KMC records who acted: pass --as USERNAME")
    return Caller(system_actor(), ADMIN)


def system_actor() -> str:
    """The shell user, as recorded when no account acts (test mode, or `kmc init`)."""
    return f"cli:{getpass.getuser()}"


def acting(permission: Permission) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Adds `--as USERNAME` and passes the resolved `Caller` as `caller`."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, as_user: str | None = None, **kwargs: Any) -> Any:
            return command(*args, caller=resolve_caller(as_user, permission), **kwargs)

        wrapper.__name__ = command.__name__
        wrapper.__doc__ = command.__doc__
        return click.option(
            "--as", "as_user", type=NAME, metavar="USERNAME", help="Account to record as the actor."
        )(wrapper)

    return decorate


json_option = shared_json_option("Machine-readable JSON output.")
