"""``sts-token``: derive decoder keys, make and decode STS tokens from the command line.

Bad input exits non-zero with one line on stderr (``sts-token: <reason>: <message>``); ``--json``
gives machine-readable output. Key material is printed only where it is the requested output.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from sts_token import batch
from sts_token.amounts import TransferAmount
from sts_token.command_line import OneLineErrorGroup, json_option, secret_key_option
from sts_token.decoding import decode_token
from sts_token.dkga import derive_decoder_key
from sts_token.ea07 import load_ea07_tables
from sts_token.identifiers import (
    BaseDate,
    DecoderKeyAlgorithm,
    EncryptionAlgorithm,
    KeyExpiryNumber,
    KeyRevisionNumber,
    KeyType,
    ManufacturerCode,
    Pan,
    SupplyGroupCode,
    TariffIndex,
)
from sts_token.keys import DecoderKey, KeyParameters, VendingKey
from sts_token.kinds import (
    ALL_REGISTERS,
    CreditSubclass,
    ManagementKind,
    MeterTestSubclass,
    TokenClass,
)
from sts_token.tid import Tid
from sts_token.token_key import TokenKey
from sts_token.token_number import Token
from sts_token.tokens import credit_token, key_change_tokens, management_token, meter_test_token

_F = TypeVar("_F", bound=Callable[..., Any])


@click.group(cls=OneLineErrorGroup, invoke_without_command=True)
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Read JSON requests from stdin, one per line; answer one JSON object per line.",
)
@click.option("--at", "stdin_at", help="With --stdin: issue time for requests with no tid/at.")
@click.pass_context
def main(context: click.Context, from_stdin: bool, stdin_at: str | None) -> None:
    """STS token engine: decoder keys (DKGA02/04), EA07/EA11 tokens, decoding."""
    if context.invoked_subcommand is not None:
        if from_stdin or stdin_at is not None:
            raise click.UsageError("--stdin and its --at take no command")
        return
    if not from_stdin:
        click.echo(context.get_help())
        return
    at = None if stdin_at is None else _issued(stdin_at, None)
    assert not isinstance(at, Tid)  # --at alone never gives a TID
    for line in sys.stdin:
        if line.strip():
            click.echo(json.dumps(batch.answer_line(line, at)))
            sys.stdout.flush()


def _key_options(func: _F) -> _F:
    options = [
        secret_key_option(
            "--vending-key",
            help="Vending key: @FILE or - (stdin) holding the hex (16 digits DKGA02, 40 DKGA04);"
            " hex given here shows in ps and shell history.",
        ),
        secret_key_option(
            "--decoder-key",
            help="Decoder key (hex in @FILE, from - or given); replaces the vending key options.",
        ),
        click.option("--dkga", type=click.Choice(["02", "04", "2", "4"]), help="DKGA02 or 04."),
        click.option("--ea", type=click.Choice(["07", "11", "7"]), help="EA07 or EA11."),
        click.option("--sgc", help="Supply group code, 6 digits."),
        click.option("--ti", help="Tariff index, 1 or 2 digits."),
        click.option("--krn", type=int, help="Key revision number."),
        click.option("--kt", type=int, help="Key type."),
        click.option("--base-date", type=click.Choice(["1993", "2014", "2035"])),
        click.option("--pan", help="Meter PAN, 18 digits (IIN + DRN + check digit)."),
        click.option("--ken", type=int, default=255, show_default=True, help="Key expiry number."),
        click.option(
            "--ea07-tables",
            type=click.Path(dir_okay=False),
            help="EA07 tables JSON (default: $STS_EA07_TABLES).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@dataclass(frozen=True)
class _KeyChoice:
    """The key options as given on the command line, resolved on demand."""

    vending_key: str | None
    decoder_key: str | None
    dkga: str | None
    ea: str | None
    sgc: str | None
    ti: str | None
    krn: int | None
    kt: int | None
    base_date: str | None
    pan: str | None
    ken: int
    ea07_tables: str | None

    @classmethod
    def take(cls, options: dict[str, Any]) -> _KeyChoice:
        """Pop the key options out of a command's keyword arguments."""
        names = cls.__dataclass_fields__
        return cls(**{name: options.pop(name) for name in names})

    @property
    def given(self) -> bool:
        """Whether any key was named at all."""
        return self.vending_key is not None or self.decoder_key is not None

    def _require(self, **values: object) -> None:
        missing = [name for name, value in values.items() if value is None]
        if missing:
            flags = ", ".join("--" + name.replace("_", "-") for name in missing)
            raise click.UsageError(f"missing {flags}")

    def base(self) -> BaseDate:
        """The base date (required whenever a key is used)."""
        self._require(base_date=self.base_date)
        return BaseDate(int(str(self.base_date)))

    def algorithm(self) -> EncryptionAlgorithm | None:
        """The EA named or implied: --ea, else EA07 for DKGA02."""
        if self.ea is not None:
            return EncryptionAlgorithm.parse(self.ea)
        if (
            self.dkga is not None
            and DecoderKeyAlgorithm.parse(self.dkga) is DecoderKeyAlgorithm.DKGA02
        ):
            return EncryptionAlgorithm.EA07
        return None

    def params(
        self,
        *,
        sgc: str | None = None,
        ti: str | None = None,
        krn: int | None = None,
        kt: int | None = None,
        ken: int | None = None,
        base_date: str | None = None,
    ) -> KeyParameters:
        """Key parameters from the options, optionally overridden (the new key of a key change)."""
        ea = self.algorithm()
        values = {
            "dkga": self.dkga,
            "ea": ea,
            "sgc": _first(sgc, self.sgc),
            "ti": _first(ti, self.ti),
            "krn": _first(krn, self.krn),
            "kt": _first(kt, self.kt),
            "base_date": _first(base_date, self.base_date),
        }
        self._require(**values)
        assert ea is not None  # checked by _require
        return KeyParameters(
            dkga=DecoderKeyAlgorithm.parse(str(values["dkga"])),
            ea=ea,
            sgc=SupplyGroupCode(str(values["sgc"])),
            tariff_index=TariffIndex.parse(str(values["ti"])),
            krn=KeyRevisionNumber(int(str(values["krn"]))),
            key_type=KeyType(int(str(values["kt"]))),
            base_date=BaseDate(int(str(values["base_date"]))),
            ken=KeyExpiryNumber(_first(ken, self.ken)),
        )

    def pan_value(self) -> Pan:
        """The meter PAN (required with a vending key)."""
        self._require(pan=self.pan)
        return Pan(str(self.pan))

    def decoder(self) -> DecoderKey:
        """The decoder key: given directly, or derived from the vending key options."""
        if self.decoder_key is not None:
            if self.vending_key is not None:
                raise click.UsageError("give --decoder-key or --vending-key, not both")
            return DecoderKey.from_hex(self.decoder_key, self.algorithm())
        self._require(vending_key=self.vending_key)
        vending_key = VendingKey.from_hex(str(self.vending_key))
        return derive_decoder_key(vending_key, self.pan_value(), self.params())

    def token_key(self) -> TokenKey:
        """The ready-to-use key; EA07 tables come from --ea07-tables or $STS_EA07_TABLES."""
        decoder = self.decoder()
        tables = None
        if decoder.ea is EncryptionAlgorithm.EA07:
            tables = load_ea07_tables(self.ea07_tables)
        return TokenKey(decoder, self.base(), ea07_tables=tables)


_T = TypeVar("_T")


def _first(override: _T | None, default: _T) -> _T:
    return default if override is None else override


def _issued(at: str | None, tid: int | None) -> datetime | Tid:
    if (at is None) == (tid is None):
        raise click.UsageError("give exactly one of --at or --tid")
    if tid is not None:
        return Tid(tid)
    try:
        issued = datetime.fromisoformat(str(at))
    except ValueError:
        raise click.BadParameter(
            f"{at!r} is not YYYY-MM-DDTHH:MM[:SS]", param_hint="--at"
        ) from None
    return issued


def _timing_options(func: _F) -> _F:
    func = click.option("--rnd", type=click.IntRange(0, 15), help="Fixed random nibble.")(func)
    func = click.option("--tid", type=int, help="Token identifier instead of --at.")(func)
    return click.option("--at", help="Issue time YYYY-MM-DDTHH:MM[:SS] (naive).")(func)


_json_option = json_option()


def _emit_tokens(tokens: tuple[Token, ...], key: TokenKey | None, as_json: bool) -> None:
    if as_json:
        rows = [{"token": t.digits, **decode_token(t, key).to_dict()} for t in tokens]
        click.echo(json.dumps(rows[0] if len(rows) == 1 else rows))
    else:
        for token in tokens:
            click.echo(token.digits)


@main.command("decoder-key")
@_key_options
@_json_option
def decoder_key_command(as_json: bool, **options: Any) -> None:
    """Derive the decoder key (hex, canonical byte order)."""
    choice = _KeyChoice.take(options)
    key = choice.decoder()
    if as_json:
        click.echo(json.dumps({"decoder_key": key.hex(), "ea": key.ea.value}))
    else:
        click.echo(key.hex())


@main.command("credit")
@_key_options
@click.option(
    "--subclass",
    required=True,
    type=click.Choice([s.cli_name for s in CreditSubclass]),
)
@click.option("--amount", required=True, help="Amount in the natural unit, 0.1 resolution.")
@_timing_options
@_json_option
def credit_command(
    subclass: str,
    amount: str,
    at: str | None,
    tid: int | None,
    rnd: int | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Class 0 credit token."""
    key = _KeyChoice.take(options).token_key()
    token = credit_token(
        key,
        CreditSubclass[subclass.upper()],
        TransferAmount.from_decimal(amount),
        _issued(at, tid),
        rnd=rnd,
    )
    _emit_tokens((token,), key, as_json)


@main.command("management")
@_key_options
@click.option(
    "--kind",
    required=True,
    type=click.Choice([k.cli_name for k in ManagementKind]),
)
@click.option("--value", type=int, help="Watts for power limits; raw 16-bit value otherwise.")
@click.option("--register", type=int, help="Register to clear (clear-credit; default 65535 = all).")
@_timing_options
@_json_option
def management_command(
    kind: str,
    value: int | None,
    register: int | None,
    at: str | None,
    tid: int | None,
    rnd: int | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Class 2 management token (not key change)."""
    management = ManagementKind[kind.upper().replace("-", "_")]
    takes = management.takes
    if register is not None and takes != "register":
        raise click.UsageError("--register applies only to --kind clear-credit")
    if takes == "register":
        if value is not None:
            raise click.UsageError("clear-credit takes --register, not --value")
        field = ALL_REGISTERS if register is None else register
    elif takes is None:
        if value is not None:
            raise click.UsageError("clear-tamper takes no --value")
        field = 0
    elif value is None:
        raise click.UsageError(f"--kind {kind} needs --value")
    else:
        field = value
    key = _KeyChoice.take(options).token_key()
    token = management_token(key, management, field, _issued(at, tid), rnd=rnd)
    _emit_tokens((token,), key, as_json)


@main.command("key-change")
@_key_options
@secret_key_option("--new-vending-key", required=True, help="New vending key (@FILE, - or hex).")
@click.option("--new-sgc", required=True)
@click.option("--new-ti", required=True)
@click.option("--new-krn", required=True, type=int)
@click.option("--new-kt", required=True, type=int)
@click.option("--new-ken", required=True, type=int)
@click.option("--new-base-date", required=True, type=click.Choice(["1993", "2014", "2035"]))
@click.option(
    "--rollover/--no-rollover",
    default=None,
    help="Set the RO flag (default: set when the base date changes).",
)
@_json_option
def key_change_command(
    new_vending_key: str,
    new_sgc: str,
    new_ti: str,
    new_krn: int,
    new_kt: int,
    new_ken: int,
    new_base_date: str,
    rollover: bool | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Key change set (EA07: 2 tokens, EA11: 4), encrypted with the current key."""
    choice = _KeyChoice.take(options)
    old = choice.token_key()
    new_params = choice.params(
        sgc=new_sgc, ti=new_ti, krn=new_krn, kt=new_kt, ken=new_ken, base_date=new_base_date
    )
    new_key = derive_decoder_key(
        VendingKey.from_hex(new_vending_key), choice.pan_value(), new_params
    )
    tokens = key_change_tokens(old, new_key, new_params, rollover=rollover)
    _emit_tokens(tokens, old, as_json)


def _control(text: str) -> int:
    try:
        return int(text[2:], 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not decimal or 0x-hex", param_hint="--control"
        ) from None


@main.command("test")
@click.option("--subclass", required=True, type=click.Choice(["0", "1"]))
@click.option("--control", required=True, help="Control field, decimal or 0x-hex.")
@click.option("--manufacturer-code", required=True, help="2 digits (subclass 0) or 4 (subclass 1).")
@_json_option
def test_command(subclass: str, control: str, manufacturer_code: str, as_json: bool) -> None:
    """Class 1 meter test/display token (not encrypted, no key)."""
    token = meter_test_token(
        MeterTestSubclass(int(subclass)), _control(control), ManufacturerCode(manufacturer_code)
    )
    _emit_tokens((token,), None, as_json)


@main.command("decode")
@click.argument("token")
@_key_options
@_json_option
def decode_command(token: str, as_json: bool, **options: Any) -> None:
    """Decode a token with the meter's key (class 1 needs no key) and verify its CRC."""
    choice = _KeyChoice.take(options)
    parsed = Token.parse(token)
    needs_key = choice.given and parsed.token_class != TokenClass.METER_TEST
    fields = decode_token(parsed, choice.token_key() if needs_key else None)
    data = fields.to_dict()
    if as_json:
        click.echo(json.dumps(data))
    else:
        for name, value in data.items():
            click.echo(f"{name}: {value}")


@main.command("batch")
@click.option("--kind", required=True, type=click.Choice(["credit", "key-change"]))
@click.option(
    "--in", "source", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option("--out", "target", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--at", help="Issue time YYYY-MM-DDTHH:MM for rows without a tid column.")
@click.option("--processes", type=click.IntRange(min=1), help="Worker processes (default: cores).")
def batch_command(
    kind: str, source: Path, target: Path, at: str | None, processes: int | None
) -> None:
    """Tokens for every meter in a CSV or JSON-lines file (resumable; see docs/tokens.md)."""
    issue_time = None if at is None else _issued(at, None)
    assert not isinstance(issue_time, Tid)  # --at alone never gives a TID
    total = batch.count_rows(source)
    with click.progressbar(length=total, label="meters", file=sys.stderr) as bar:
        issued, refused = batch.run(
            kind, source, target, issue_time, processes=processes, report=sys.stderr, progress=bar
        )
    click.echo(f"{issued} issued, {refused} refused, into {target}")
