"""`meter-emulator`: an STS prepayment meter that accepts or refuses tokens, for tests and demos.

Every command takes `--state DIR` (or `$METER_EMULATOR_STATE`). `enter` gives each token its own
verdict and exits 1 if any was refused; other failures print one line
`meter-emulator: <reason>: <message>` and exit 1 (usage errors 2).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import click

from meter_emulator import meter, storage
from meter_emulator.errors import MeterError, TokenRefused
from sts_token import (
    DecoderKey,
    KeyParameters,
    Pan,
    Tid,
    TokenError,
    VendingKey,
    derive_decoder_key,
)
from sts_token.command_line import OneLineErrorGroup, json_option, secret_key_option


class _MeterErrors(OneLineErrorGroup):
    program = "meter-emulator"
    refusals = (MeterError, TokenError)


_state_option = click.option(
    "--state",
    required=True,
    envvar="METER_EMULATOR_STATE",
    type=click.Path(file_okay=False, path_type=Path),
    help="The meter's state folder ($METER_EMULATOR_STATE).",
)
_json_option = json_option()
_tables_option = click.option(
    "--ea07-tables", type=click.Path(dir_okay=False), help="EA07 tables JSON ($STS_EA07_TABLES)."
)


@click.group(cls=_MeterErrors)
def main() -> None:
    """STS meter emulator: holds a decoder key, accepts tokens, shows balances."""


@main.command()
@_state_option
@click.option("--pan", required=True, help="Meter PAN, 18 digits.")
@click.option("--sgc", required=True)
@click.option("--ti", required=True)
@click.option("--krn", required=True, type=int)
@click.option("--kt", required=True, type=int)
@click.option("--ken", required=True, type=int)
@click.option("--base-date", required=True, type=click.Choice(["1993", "2014", "2035"]))
@click.option("--dkga", required=True, type=click.Choice(["02", "04"]))
@click.option("--ea", required=True, type=click.Choice(["07", "11"]))
@secret_key_option("--decoder-key", help="The meter's decoder key: @FILE, - (stdin) or hex.")
@secret_key_option(
    "--vending-key",
    help="(tests) derive the decoder key from this vending key: @FILE, - (stdin) or hex.",
)
@click.option(
    "--manufactured-at",
    help="Manufacture time (ISO, UTC) filling the TID memory; default the base date (blank).",
)
@_json_option
def init(
    state: Path,
    pan: str,
    sgc: str,
    ti: str,
    krn: int,
    kt: int,
    ken: int,
    base_date: str,
    dkga: str,
    ea: str,
    decoder_key: str | None,
    vending_key: str | None,
    manufactured_at: str | None,
    as_json: bool,
) -> None:
    """Make a meter with a decoder key (given, or derived from a vending key for tests)."""
    if (decoder_key is None) == (vending_key is None):
        raise click.UsageError("give exactly one of --decoder-key or --vending-key")
    params = KeyParameters.from_values(
        dkga=dkga, ea=ea, sgc=sgc, ti=ti, krn=krn, kt=kt, base_date=int(base_date), ken=ken
    )
    meter_pan = Pan(pan)
    key = (
        DecoderKey.from_hex(decoder_key, params.ea)
        if decoder_key is not None
        else derive_decoder_key(VendingKey.from_hex(str(vending_key)), meter_pan, params)
    )
    tid = 0
    if manufactured_at:
        made = dt.datetime.fromisoformat(manufactured_at)
        naive = made.astimezone(dt.UTC).replace(tzinfo=None) if made.tzinfo else made
        tid = Tid.at(max(naive, params.base_date.start), params.base_date).value
    state_value = meter.manufactured(
        pan=meter_pan.digits,
        sgc=params.sgc.digits,
        ti=params.tariff_index.value,
        krn=krn,
        kt=kt,
        ken=ken,
        base_date=params.base_date,
        dkga=dkga,
        decoder_key=key,
        manufacture_tid=tid,
    )
    storage.create(state, state_value)
    _emit(state_value.describe(), as_json, f"meter {meter_pan.digits} ready in {state}")


def _emit(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


@main.command()
@_state_option
@click.argument("tokens", nargs=-1, required=True)
@_tables_option
@_json_option
def enter(state: Path, tokens: tuple[str, ...], ea07_tables: str | None, as_json: bool) -> None:
    """Enter tokens in order; each is accepted or refused on its own (exit 1 if any refused)."""
    verdicts = []
    with storage.locked(state):
        current = storage.read(state)
        for text in tokens:
            try:
                accepted = meter.enter(current, text, ea07_tables=ea07_tables)
            except TokenRefused as refusal:
                verdicts.append(
                    {
                        "token": text,
                        "accepted": False,
                        "reason": refusal.reason,
                        "message": refusal.message,
                    }
                )
                continue
            current = accepted.state
            storage.write(state, current)
            verdicts.append(
                {
                    "token": text,
                    "accepted": True,
                    "kind": accepted.kind,
                    "message": accepted.message,
                    **accepted.details,
                }
            )
    if as_json:
        click.echo(json.dumps({"verdicts": verdicts, "meter": current.describe()}, indent=2))
    else:
        for verdict in verdicts:
            if verdict["accepted"]:
                click.echo(f"{verdict['token']}: accepted: {verdict['message']}")
            else:
                click.echo(
                    f"{verdict['token']}: refused: {verdict['reason']}: {verdict['message']}"
                )
    if not all(v["accepted"] for v in verdicts):
        sys.exit(1)


@main.command()
@_state_option
@_json_option
def show(state: Path, as_json: bool) -> None:
    """The meter: key parameters (not the key), balances, settings, TID memory."""
    described = storage.read(state).describe()
    credit = ", ".join(f"{name} {value}" for name, value in described["credit"].items())
    _emit(
        described,
        as_json,
        f"meter {described['pan']} SGC {described['sgc']} KRN {described['krn']} KT {described['kt']} "
        f"TI {described['ti']} KEN {described['ken']} EA{described['ea']} base date {described['base_date']}\n"
        f"credit: {credit}",
    )
