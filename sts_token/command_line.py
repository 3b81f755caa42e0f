"""Click pieces shared by `sts-token`, the emulators and `kmc`: the one refusal format (a line
on stderr, or a JSON object on stdout under `--json`), the `--json` option and the secret key
option (hex, `@FILE` or `-` for stdin). No Flask, no database: the KMC imports this, not the
other way round."""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any, ClassVar, TypeVar

import click

from sts_token.errors import TokenError

# A key is at most 40 hex digits; anything much longer is not a key file (nor /dev/zero).
_MAX_KEY_TEXT = 4096
_STDIN_TAKEN = "sts_token.key_from_stdin"
_F = TypeVar("_F", bound=Callable[..., Any])


def _secret_key(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The hex of a secret key option given as hex, `@FILE` or `-` (one line of stdin)."""
    if value is None or (value != "-" and not value.startswith("@")):
        return value
    if value == "-":
        if ctx.meta.get(_STDIN_TAKEN):
            raise click.BadParameter("only one key can be read from stdin ('-')", ctx, param)
        ctx.meta[_STDIN_TAKEN] = True
        source, content = "stdin", sys.stdin.readline(_MAX_KEY_TEXT)
    else:
        source = value[1:]
        try:
            with open(source, encoding="ascii") as file:
                content = file.read(_MAX_KEY_TEXT + 1)
        except OSError as error:
            raise click.BadParameter(
                f"cannot read {source}: {error.strerror}", ctx, param
            ) from None
        except UnicodeDecodeError:
            raise click.BadParameter(
                f"{source} is not a text file of hex digits", ctx, param
            ) from None
        if len(content) > _MAX_KEY_TEXT:
            raise click.BadParameter(f"{source} is too large to hold a key", ctx, param)
    key = content.strip()
    if not key:
        raise click.BadParameter(f"{source} holds no key", ctx, param)
    return key


def secret_key_option(*names: str, **kwargs: Any) -> Callable[[_F], _F]:
    """A click option for a secret key: hex, or preferably `@FILE` (the hex read from FILE) or
    `-` (one line of hex read from stdin).

    Hex given directly shows in `ps` and the shell history (docs/tokens.md). Only one option of
    a command may read stdin. Errors name the file, never what it holds.
    """
    return click.option(*names, metavar="HEX|@FILE|-", callback=_secret_key, **kwargs)


def refusal_reason(error: Exception) -> str:
    """The stable `reason` an error carries (a string or an Enum), else its type's name."""
    reason = getattr(error, "reason", type(error).__name__)
    if isinstance(reason, enum.Enum):
        reason = str(reason.value).replace("-", "_")
    return str(reason)


def refusal_message(error: Exception) -> str:
    """The message an error carries for the user."""
    return str(getattr(error, "message", None) or error)


def refusal_line(error: Exception) -> str:
    """`<reason>: <message>` of an error carrying a stable `reason` (a string or an Enum)."""
    return f"{refusal_reason(error)}: {refusal_message(error)}"


def echo_refusal(program: str, reason: str, message: str, *, as_json: bool) -> None:
    """The one refusal format: `<program>: <reason>: <message>` on stderr, or with `--json`
    the object `{"error": reason, "message": message}` on stdout (where scripts read)."""
    if as_json:
        click.echo(json.dumps({"error": reason, "message": message}))
    else:
        click.echo(f"{program}: {reason}: {message}", err=True)


# Whether the command being run was given `--json` (set by `json_option`, read by the group).
_JSON_ASKED: ContextVar[bool] = ContextVar("sts_token_json_asked", default=False)


def _note_json(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        _JSON_ASKED.set(True)
    return value


def json_option(help: str = "Machine-readable output.") -> Callable[[_F], _F]:
    """`--json` (passed as `as_json`): JSON output, and refusals as JSON objects on stdout.

    Eager, so a later usage error in the same command (a missing option) is reported in JSON.
    """
    return click.option(
        "--json", "as_json", is_flag=True, is_eager=True, callback=_note_json, help=help
    )


def _json_in(args: Sequence[str]) -> bool:
    """Whether `--json` is among the options (before any `--`) of a command line that did not
    parse far enough for the option to be processed."""
    options = list(args)
    return "--json" in (options[: options.index("--")] if "--" in options else options)


# click >= 8.2 raises this (a UsageError whose message is the help) for a group run bare.
_NO_ARGS_IS_HELP: tuple[type[click.UsageError], ...] = tuple(
    getattr(click.exceptions, name)
    for name in ("NoArgsIsHelpError",)
    if hasattr(click.exceptions, name)
)


class OneLineErrorGroup(click.Group):
    """Every failure is one line on stderr (or a JSON object on stdout under `--json`) and a
    non-zero exit, never a traceback.

    Refusals (the `refusals` types, exit 1): `<program>: <reason>: <message>`. Usage errors
    (exit 2): `<program>: usage: <message>`. Any other exception is a bug: `<program>:
    internal_error: ...` (exit 1), or its traceback when `$<debug_variable>` is set. Subclasses
    name the program, its refusal types and, with `reason`, reasons for errors without one.
    """

    program: ClassVar[str] = "sts-token"
    refusals: ClassVar[tuple[type[Exception], ...]] = (TokenError,)
    debug_variable: ClassVar[str] = "STS_DEBUG"

    def reason(self, error: Exception) -> str:
        """The reason reported for a refusal."""
        return refusal_reason(error)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        given = args[0] if args else kwargs.get("args")
        argv = sys.argv[1:] if given is None else given
        kwargs["standalone_mode"] = False
        asked = _JSON_ASKED.set(False)
        try:
            return super().main(*args, **kwargs)
        except Exception as error:
            known = (*self.refusals, click.ClickException, click.Abort)
            if not isinstance(error, known) and os.environ.get(self.debug_variable):
                raise
            usage = isinstance(error, click.UsageError)
            sys.exit(self._report(error, as_json=_JSON_ASKED.get() or (usage and _json_in(argv))))
        finally:
            _JSON_ASKED.reset(asked)

    def _report(self, error: Exception, *, as_json: bool) -> int:
        """Report a failure in the one format; returns the exit status."""
        if isinstance(error, self.refusals):
            echo_refusal(self.program, self.reason(error), refusal_message(error), as_json=as_json)
            return 1
        if isinstance(error, _NO_ARGS_IS_HELP):  # the program or a group run bare: its help
            click.echo(error.format_message(), err=True)
            return error.exit_code
        if isinstance(error, click.UsageError):
            message = error.format_message()
            if as_json:
                echo_refusal(self.program, "usage", message, as_json=True)
            click.echo(f"{self.program}: usage: {message}", err=True)
            return error.exit_code
        if isinstance(error, click.ClickException):
            echo_refusal(self.program, "error", error.format_message(), as_json=as_json)
            return error.exit_code
        if isinstance(error, click.Abort):
            if as_json:
                echo_refusal(self.program, "aborted", "aborted", as_json=True)
            else:
                click.echo(f"{self.program}: aborted", err=True)
            return 1
        message = f"internal error ({type(error).__name__}); rerun with {self.debug_variable}=1"
        echo_refusal(self.program, "internal_error", message, as_json=as_json)
        return 1
