"""Click pieces shared by `sts-token` and the vending-side emulators: the one-line-error group
and the secret key option (hex, `@FILE` or `-` for stdin)."""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
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


def refusal_line(error: Exception) -> str:
    """`<reason>: <message>` of an error carrying a stable `reason` (a string or an Enum)."""
    reason = getattr(error, "reason", type(error).__name__)
    if isinstance(reason, enum.Enum):
        reason = str(reason.value).replace("-", "_")
    return f"{reason}: {getattr(error, 'message', None) or error}"


class OneLineErrorGroup(click.Group):
    """Every failure is one line on stderr and a non-zero exit, never a traceback.

    Subclasses name the program and the refusal types they report (exit status 1); usage
    errors keep click's exit status (2).
    """

    program: ClassVar[str] = "sts-token"
    refusals: ClassVar[tuple[type[Exception], ...]] = (TokenError,)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except self.refusals as error:
            click.echo(f"{self.program}: {refusal_line(error)}", err=True)
            sys.exit(1)
        except click.ClickException as error:
            click.echo(f"{self.program}: usage: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            click.echo(f"{self.program}: aborted", err=True)
            sys.exit(1)
