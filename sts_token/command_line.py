"""The one-line-error click group shared by `sts-token` and the vending-side emulators."""

from __future__ import annotations

import enum
import sys
from typing import Any, ClassVar

import click

from sts_token.errors import TokenError


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
