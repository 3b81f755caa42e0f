"""`kmc custodians init`, `kmc unseal`, `kmc seal`.

`kmc custodians init` runs in the instance (it splits the key on this machine). `kmc unseal` and
`kmc seal` act on the *running* KMC, whose memory holds the unsealed key: they send one share,
or the seal order, to its API with an API token of a custodian (`kmc user token`) read from a
file, never from the command line or the environment.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from kmc.command_line import NAME, KmcCommand, emit, json_option, resolve_caller
from kmc.custodians import service
from kmc.errors import InvalidInput, KMCError, Unavailable
from kmc.instance import initialise
from kmc.permissions import Caller, Permission


@click.group()
def custodians() -> None:
    """Custodians of the split master key (split knowledge for a live KMC)."""


@custodians.command("init", cls=KmcCommand)
@click.option("--shares", type=click.IntRange(2, 16), required=True, help="Custodians (N).")
@click.option(
    "--threshold", type=click.IntRange(2, 16), required=True, help="Shares that unseal (M)."
)
@click.option(
    "--as", "as_user", type=NAME, metavar="USERNAME", help="Account to record as the actor."
)
def init(shares: int, threshold: int, as_user: str | None) -> None:
    """Split the master key into N shares, M of which unseal the KMC; initialise the instance.

    Each share is printed once, here, for its custodian to keep: the KMC never stores one. Then
    the master key file is removed; the KMC starts sealed from now on. On a fresh instance this
    is its `kmc init` (it acts as the system user when no account exists yet).
    """
    caller = resolve_caller(as_user, Permission.MASTER_KEY_CUSTODY, live_needs_account=False)
    split = service.split_master_key(caller, shares, threshold, initialise)
    click.echo(f"Master key split: {threshold} of these {shares} shares unseal the KMC.")
    click.echo("Hand each custodian one share; each is shown only now and is never stored.")
    for number, share in enumerate(split.shares, start=1):
        click.echo(f"share {number}: {share}")
    if split.initialised.admin_password:
        click.echo(
            f"Bootstrap account 'admin' created; one-time password: {split.initialised.admin_password}"
        )
    if service.destroy_master_key_file():
        click.echo("The master key file was removed.")
    click.echo(f"check value: {split.custody.check_value}")


def _read_share() -> str:
    if sys.stdin.isatty():
        return str(click.prompt("Your share", hide_input=True, err=True))
    return sys.stdin.readline()


def unseal_this_process(caller: Caller) -> None:
    """Unseal this CLI process's own vault (`kmc init --unseal`, `kmc keystore migrate
    --unseal` on a KMC split among custodians): shares from stdin, one a line (prompted, hidden,
    on a terminal), until the threshold is met; each entry audited like one on the page."""
    while True:
        progress = service.status()
        if progress is None:
            raise service.not_split()
        if not progress.sealed:
            return
        share = _read_share()
        if not share.strip():
            raise InvalidInput(
                "shares_missing",
                f"the input ended with {progress.entered} of the {progress.threshold} shares "
                "that unseal the KMC",
            )
        service.enter_share(caller, share)


def _call(server: str, token_file: Path, path: str, body: dict[str, Any] | None) -> Any:
    token = token_file.read_text().strip()
    if not token:
        raise InvalidInput("invalid_token_file", f"{token_file} is empty")
    request = urllib.request.Request(
        f"{server.rstrip('/')}/api/v1/custodians{path}",
        data=json.dumps(body or {}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)
    except urllib.error.HTTPError as refused:
        try:
            answer = json.load(refused)
            reason, message = answer["error"], answer["message"]
        except (ValueError, KeyError, TypeError):
            reason, message = "server_error", f"the KMC answered HTTP {refused.code}"
        raise KMCError(reason, message) from None
    except (urllib.error.URLError, OSError) as unreachable:
        raise Unavailable("server_unreachable", f"no KMC answers at {server}") from unreachable


_server = click.option(
    "--server", default="http://127.0.0.1:5000", show_default=True, help="The running KMC."
)
_token_file = click.option(
    "--token-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="File holding a custodian's API token (kmc user token).",
)


def _report(progress: dict[str, Any], as_json: bool) -> None:
    def text() -> str:
        if not progress["sealed"]:
            return "The KMC is unsealed."
        return (
            f"The KMC is sealed: {progress['entered']} of {progress['threshold']} shares entered."
        )

    emit(progress, as_json, text)


@click.command()
@_server
@_token_file
@json_option
def unseal(server: str, token_file: Path, as_json: bool) -> None:
    """Enter your share (read from stdin) into the running KMC at --server."""
    _report(_call(server, token_file, "/shares", {"share": _read_share()}), as_json)


@click.command()
@_server
@_token_file
@json_option
def seal(server: str, token_file: Path, as_json: bool) -> None:
    """Seal the running KMC at --server: its master key and any shares entered are wiped."""
    _report(_call(server, token_file, "/seal", None), as_json)
