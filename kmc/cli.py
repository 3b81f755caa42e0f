"""The `kmc` command line: the root group over the instance commands and every feature's group.

Every command is imported only when named (`LazyGroup`), so `kmc --help` and a mistyped command
start without loading the web framework, the database layer or the crypto library.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from kmc.errors import KeyStoreError, KMCError
from sts_token.command_line import OneLineErrorGroup

if TYPE_CHECKING:
    from flask import Flask

# name: (module:attribute, one-line help shown by `kmc --help` without importing the module)
COMMANDS = {
    "init": ("kmc.instance_cli:init", "Create or upgrade the instance (idempotent)."),
    "serve": ("kmc.instance_cli:serve", "Serve the KMC (waitress, or gunicorn with --workers)."),
    "ca": ("kmc.instance_cli:ca", "The KMC's own certificate authority."),
    "hsm": ("kmc.instance_cli:hsm", "The PKCS#11 token holding the KMC's keys."),
    "keystore": ("kmc.instance_cli:keystore", "Where the KMC's keys live: migrate to a token."),
    "backup": ("kmc.instance_cli:backup", "Write a signed, encrypted backup of this KMC."),
    "restore": ("kmc.instance_cli:restore", "Restore a backup into an empty KMC."),
    "user": ("kmc.accounts.cli:user", "Accounts of people and machine clients."),
    "audit": ("kmc.audit.cli:audit", "The tamper-evident audit log."),
    "manufacturer": ("sm_registry.cli:manufacturer", "SM manufacturers and their ID_man."),
    "sm": ("sm_registry.cli:sm", "Security Modules: registration, lifecycle, certificates."),
    "sgc": ("vending_keys.cli:sgc", "Supply groups."),
    "key": ("vending_keys.cli:key", "Vending keys: generate, authorise, deactivate, compromise."),
    "keys": ("vending_keys.cli:keys", "Reports over all vending keys."),
    "approvals": ("vending_keys.cli:approvals", "Two-person approvals of keys and authorisations."),
    "keyload": ("key_load.cli:keyload", "Key loading: VKLOADREQ in, EKLF out."),
    "custodians": ("kmc.custodians.cli:custodians", "Custodians of the split master key."),
    "unseal": ("kmc.custodians.cli:unseal", "Enter your share into the running KMC."),
    "seal": ("kmc.custodians.cli:seal", "Seal the running KMC again."),
}


class LazyGroup(OneLineErrorGroup):
    """The root group: each command is imported when invoked, not to list it in `--help`
    (click's documented lazy-loading pattern, with the one-line help kept beside the path).

    Its `app_factory(command)` builds the KMC app a command runs in (`kmc.command_line.KmcCommand`;
    where no instance folder is, only the commands in `CREATING` get one).
    It reports failures in the one refusal format of `sts_token.command_line`: a KMCError as
    `kmc: <reason>: <message>` (exit 1), a KeyStoreError with reason `keystore`, a usage error
    as `kmc: usage: ...` (exit 2), anything else as `kmc: internal_error: ...` (KMC_DEBUG=1
    shows the traceback to a developer). Under `--json` a refusal is a JSON object on stdout."""

    program = "kmc"
    refusals = (KMCError, KeyStoreError)
    debug_variable = "KMC_DEBUG"

    def reason(self, error: Exception) -> str:
        return "keystore" if isinstance(error, KeyStoreError) else super().reason(error)

    def __init__(
        self, *args: Any, lazy_commands: Mapping[str, tuple[str, str]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy_commands])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy_commands:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = self.lazy_commands[cmd_name][0].partition(":")
        command: click.Command = getattr(importlib.import_module(module_name), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, self.lazy_commands[name][1])
            if name in self.lazy_commands
            else (name, self.commands[name].get_short_help_str())
            for name in self.list_commands(ctx)
        ]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


# The commands that create an instance (named below the root); every other one needs one.
CREATING = ("init", "hsm init", "custodians init")


def _build_app(command: str) -> Flask:
    """The app `command` runs in. Where no instance folder is, only `CREATING` commands
    build one (creating the folder); any other is refused in one line and creates nothing."""
    from kmc import config
    from kmc.errors import NotFound

    # A node of a multi-node KMC may run on an empty folder (docs/architecture.md, "Nodes"):
    # what is refused is a folder that does not exist, such as ./instance by accident.
    instance = config.instance_path_from_env()
    if command not in CREATING and not instance.is_dir():
        raise NotFound(
            "no_instance",
            f"no KMC instance at {instance}: run 'kmc init' to create one here, "
            "or set KMC_INSTANCE to the instance folder",
        )
    from kmc.app import create_app

    return create_app()


@click.group(cls=LazyGroup, lazy_commands=COMMANDS)
def main() -> None:
    """STS Key Management Centre: administration from the shell.

    Configuration comes from KMC_INSTANCE, KMC_DATABASE_URL and KMC_MODE (see README).
    """


main.app_factory = _build_app  # type: ignore[attr-defined]
