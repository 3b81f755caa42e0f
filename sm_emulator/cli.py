"""`sm-emulator`: a software security module (SM) for the KMC's key-load protocol and for vending.

Every command takes `--state DIR` (or `$SM_EMULATOR_STATE`). Refusals print one line,
`sm-emulator: <reason>: <message>`, and exit 1; usage errors exit 2. `--json` gives machine output.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from key_load_protocol import KeyIdentity, ProtocolError
from sm_emulator import batch
from sm_emulator.clock import from_environment
from sm_emulator.errors import SmError
from sm_emulator.module import REQUEST_LIFETIME, Loaded, SecurityModule
from sm_emulator.registers import MIN_REGISTERS
from sm_emulator.vending import (
    MeterKey,
    Vended,
    Vending,
    key_identity,
    parse_currency,
    parse_key,
)
from sts_token import (
    CreditSubclass,
    EncryptionAlgorithm,
    ManagementKind,
    ManufacturerCode,
    MeterTestSubclass,
    Pan,
    TariffIndex,
    TokenError,
    TransferAmount,
    meter_test_token,
)
from sts_token import batch as token_batch
from sts_token.command_line import OneLineErrorGroup, json_option
from sts_token.kinds import ALL_REGISTERS


class _SmErrors(OneLineErrorGroup):
    program = "sm-emulator"
    refusals = (SmError, TokenError, ProtocolError)


_state_option = click.option(
    "--state",
    "state",
    required=True,
    envvar="SM_EMULATOR_STATE",
    type=click.Path(file_okay=False, path_type=Path),
    help="The SM's state folder ($SM_EMULATOR_STATE).",
)
_json_option = json_option()
_ea07_tables_option = click.option(
    "--ea07-tables",
    type=click.Path(dir_okay=False),
    help="EA07 tables JSON (default: $STS_EA07_TABLES).",
)


def _emit(data: Any, as_json: bool, text: str | Callable[[], str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(text() if callable(text) else text)


@contextmanager
def _opened(state: Path) -> Iterator[SecurityModule]:
    lifetime = click.get_current_context().find_object(dt.timedelta) or REQUEST_LIFETIME
    sm = SecurityModule(state, clock=from_environment(), request_lifetime=lifetime)
    try:
        yield sm
    finally:
        sm.close()


# A year: past that a request would hardly be "outstanding"; also keeps the timedelta in range.
_MAX_LIFETIME_HOURS = 366 * 24


@click.group(cls=_SmErrors)
@click.option(
    "--request-lifetime",
    type=click.IntRange(min=1, max=_MAX_LIFETIME_HOURS),
    default=REQUEST_LIFETIME // dt.timedelta(hours=1),
    show_default=True,
    envvar="SM_EMULATOR_REQUEST_LIFETIME",
    metavar="HOURS",
    help="How long a key-load request waits for its EKLF ($SM_EMULATOR_REQUEST_LIFETIME).",
)
@click.pass_context
def main(context: click.Context, request_lifetime: int) -> None:
    """Software security module: registration, key loading (EKLF) and STS token vending."""
    context.obj = dt.timedelta(hours=request_lifetime)


@main.command()
@_state_option
@click.option("--id-man", required=True, help="The manufacturer's ID_man (4 hex digits).")
@click.option("--smid", required=True, help="The SM's identifier (1-16 digits).")
@click.option(
    "--kind", type=click.Choice(["virtual", "certified"]), default="virtual", show_default=True
)
@click.option(
    "--registers",
    type=click.IntRange(min=MIN_REGISTERS),
    default=MIN_REGISTERS,
    show_default=True,
    help="Number of key registers.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the PKCS#10 registration request (PEM) for `kmc sm register`.",
)
@_json_option
def init(
    state: Path, id_man: str, smid: str, kind: str, registers: int, out: Path, as_json: bool
) -> None:
    """Create the state folder, a P-384 key pair and the registration request."""
    sm, csr = SecurityModule.initialise(
        state, smid=smid, id_man=id_man, kind=kind, registers=registers, clock=from_environment()
    )
    sm.close()
    out.write_bytes(csr)
    _emit(
        {"smid": sm.smid, "id_man": sm.id_man, "kind": sm.kind, "csr": str(out)},
        as_json,
        f"SM {sm.smid} ({sm.id_man}, {sm.kind}) created in {state}; registration request: {out}",
    )


@main.command()
@_state_option
@click.option(
    "--kmc-root", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@_json_option
def trust(state: Path, kmc_root: Path, as_json: bool) -> None:
    """Pin the KMC root certificate (PEM): EKLFs and the SM certificate must chain to it."""
    with _opened(state) as sm:
        root = sm.trust(kmc_root.read_bytes())
    subject = root.subject.rfc4514_string()
    _emit({"root": subject}, as_json, f"pinned KMC root: {subject}")


@main.command("install-cert")
@_state_option
@click.argument("certificate", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_json_option
def install_cert(state: Path, certificate: Path, as_json: bool) -> None:
    """Install the SM certificate the KMC issued (PEM; may include the issuing CA)."""
    with _opened(state) as sm:
        installed = sm.install_certificate(certificate.read_bytes())
    serial = f"{installed.certificate.serial_number:x}"
    _emit(
        {"serial": serial, "intermediates": len(installed.intermediates)},
        as_json,
        f"installed SM certificate {serial} (chains to the pinned root)",
    )


_key_option = click.option(
    "--key", "keys", multiple=True, metavar="SGC:KRN:KT", help="A key to ask for (repeatable)."
)
_all_option = click.option(
    "--all", "all_keys", is_flag=True, help="Ask for every key authorised for this SM."
)


def _wanted(keys: tuple[str, ...], all_keys: bool) -> tuple[KeyIdentity, ...] | None:
    if bool(keys) == all_keys:
        raise click.UsageError("give --key SGC:KRN:KT (one or more) or --all")
    return None if all_keys else tuple(parse_key(k) for k in keys)


def _loaded_text(loaded: Loaded) -> str:
    return f"loaded EKLF #{loaded.sequence} from {loaded.kmc_id}: " + (
        ", ".join(f"{r.identity} KCV {r.kcv} in register {r.slot}" for r in loaded.registers)
        or "no keys"
    )


@main.command()
@_state_option
@_key_option
@_all_option
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@_json_option
def request(state: Path, keys: tuple[str, ...], all_keys: bool, out: Path, as_json: bool) -> None:
    """Write a signed VKLOADREQ (DER) with a fresh nonce, for `kmc keyload process`."""
    wanted = _wanted(keys, all_keys)
    with _opened(state) as sm:
        der = sm.request(wanted)
    out.write_bytes(der)
    asked = "all authorised keys" if wanted is None else ", ".join(str(k) for k in wanted)
    _emit(
        {"out": str(out), "keys": None if wanted is None else [str(k) for k in wanted]},
        as_json,
        f"wrote VKLOADREQ for {asked} to {out}",
    )


@main.command()
@_state_option
@click.argument("eklf", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_json_option
def load(state: Path, eklf: Path, as_json: bool) -> None:
    """Verify, decrypt and check an EKLF, then install its keys (all or nothing)."""
    with _opened(state) as sm:
        loaded = sm.load(eklf.read_bytes())
    _emit(loaded.to_dict(), as_json, lambda: _loaded_text(loaded))


@main.command()
@_state_option
@click.option("--kmc", "kmc_url", required=True, help="The KMC's base URL (https://...).")
@click.option(
    "--ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The CA certificate (PEM) of the KMC's TLS certificate (default: the system's).",
)
@_key_option
@click.option(
    "--all", "all_keys", is_flag=True, help="Every key authorised for this SM (the default)."
)
@_json_option
def keyload(
    state: Path,
    kmc_url: str,
    ca: Path | None,
    keys: tuple[str, ...],
    all_keys: bool,
    as_json: bool,
) -> None:
    """Request keys from the KMC online, receive and load the EKLF in one step."""
    from sm_emulator.online import Kmc, load_online

    if keys and all_keys:
        raise click.UsageError("give --key SGC:KRN:KT (one or more) or --all, not both")
    kmc = Kmc(kmc_url, ca)
    with _opened(state) as sm:
        loaded = load_online(sm, kmc, _wanted(keys, not keys))
    _emit(loaded.to_dict(), as_json, lambda: _loaded_text(loaded))


@main.command()
@_state_option
@_json_option
def keys(state: Path, as_json: bool) -> None:
    """The key registers: attributes, counters and check values (never key values)."""
    with _opened(state) as sm:
        status = sm.status()
        rows = [r.to_dict() for r in sm.registers()]
    _emit(
        {**status, "keys": rows},
        as_json,
        lambda: "\n".join(
            [
                f"SM {status['smid']}: {status['registers']['used']} of {status['registers']['total']} registers used"
            ]
            + [
                f"{r['slot']:>3} SGC {r['sgc']} KRN {r['krn']} KT {r['kt']} DKGA{r['dkga']} "
                f"EA{'/'.join(r['eas'])} KCV {r['kcv']} IUT {r['iut']} "
                f"currency {r['currency_used']}/{r['clm'] or '-'} units {r['units_used']}/{r['resource_limit'] or '-'}"
                for r in rows
            ]
        ),
    )


@main.group()
def vend() -> None:
    """Issue tokens from the key registers (credit, management, key change, test)."""


def _meter(sgc: str, krn: int, kt: int, pan: str, ti: str, ea: str | None) -> MeterKey:
    return MeterKey(
        key_identity(sgc, krn, kt),
        Pan(pan),
        TariffIndex.parse(ti),
        None if ea is None else EncryptionAlgorithm(ea),
    )


_METER_OPTIONS = (
    _state_option,
    click.option("--sgc", required=True, help="Supply group code of the key register."),
    click.option("--krn", required=True, type=int, help="Key revision number of the register."),
    click.option("--kt", required=True, type=int, help="Key type of the register."),
    click.option("--pan", required=True, help="The meter's PAN (18 digits)."),
    click.option("--ti", required=True, help="The meter's tariff index."),
    click.option("--ea", type=click.Choice(["07", "11"]), help="Needed when the key allows both."),
    _ea07_tables_option,
    _json_option,
)


Output = tuple[dict[str, Any], str]


def _tokens(vended: Vended) -> Output:
    """A vend's output: JSON details, or the token digits one per line."""
    return vended.to_dict(), "\n".join(t.digits for t in vended.tokens)


def _meter_command(func: Callable[..., Output]) -> Callable[..., None]:
    """Give a command the register and meter options; it receives `vending` and `meter` and
    returns its output as (JSON data, text)."""

    @functools.wraps(func)
    def command(
        state: Path,
        sgc: str,
        krn: int,
        kt: int,
        pan: str,
        ti: str,
        ea: str | None,
        ea07_tables: str | None,
        as_json: bool,
        **options: Any,
    ) -> None:
        meter = _meter(sgc, krn, kt, pan, ti, ea)
        with _opened(state) as sm:
            data, text = func(Vending(sm, ea07_tables=ea07_tables), meter, **options)
        _emit(data, as_json, text)

    for option in reversed(_METER_OPTIONS):
        command = option(command)
    return command


@vend.command("credit")
@click.option(
    "--subclass",
    type=click.Choice([s.cli_name for s in CreditSubclass]),
    default="electricity",
    show_default=True,
)
@click.option("--amount", required=True, help="Units in the natural unit, 0.1 resolution.")
@click.option("--currency", required=True, help="What the customer paid: counted against the CLM.")
@_meter_command
def vend_credit(
    vending: Vending, meter: MeterKey, subclass: str, amount: str, currency: str
) -> Output:
    """A credit token (class 0)."""
    units, paid = TransferAmount.from_decimal(amount), parse_currency(currency)
    return _tokens(vending.credit(meter, CreditSubclass[subclass.upper()], units, paid))


def _management_field(kind: ManagementKind, value: int | None, register: int | None) -> int:
    """The value field: --register for clear-credit (all registers by default), nothing for
    clear-tamper, --value otherwise."""
    takes = kind.takes or "nothing"
    if (takes != "register" and register is not None) or (takes != "value" and value is not None):
        raise click.UsageError(
            f"--kind {kind.cli_name} takes {'--' + takes if takes != 'nothing' else 'no value'}"
        )
    if takes == "register":
        return ALL_REGISTERS if register is None else register
    if takes == "nothing":
        return 0
    if value is None:
        raise click.UsageError(f"--kind {kind.cli_name} needs --value")
    return value


@vend.command("management")
@click.option("--kind", required=True, type=click.Choice([k.cli_name for k in ManagementKind]))
@click.option("--value", type=int, help="Watts for power limits; raw 16-bit value otherwise.")
@click.option("--register", type=int, help="Register to clear (clear-credit; default all).")
@_meter_command
def vend_management(
    vending: Vending, meter: MeterKey, kind: str, value: int | None, register: int | None
) -> Output:
    """A management token (class 2 with a TID)."""
    management = ManagementKind[kind.upper().replace("-", "_")]
    field = _management_field(management, value, register)
    return _tokens(vending.management(meter, management, field))


@vend.command("key-change")
@click.option("--new-sgc", required=True)
@click.option("--new-krn", required=True, type=int)
@click.option("--new-kt", required=True, type=int)
@click.option("--new-ti", help="The meter's tariff index after the change (default: unchanged).")
@click.option(
    "--rollover/--no-rollover", default=None, help="RO flag (default: base date changes)."
)
@_meter_command
def vend_key_change(
    vending: Vending,
    meter: MeterKey,
    new_sgc: str,
    new_krn: int,
    new_kt: int,
    new_ti: str | None,
    rollover: bool | None,
) -> Output:
    """A key change set moving the meter from --sgc/--krn/--kt to --new-sgc/--new-krn/--new-kt."""
    new = _meter(new_sgc, new_krn, new_kt, meter.pan.digits, new_ti or meter.ti.digits, None)
    return _tokens(vending.key_change(meter, new.identity, new.ti, rollover))


@main.command("batch")
@_state_option
@click.option("--kind", required=True, type=click.Choice(["credit", "key-change"]))
@click.option(
    "--in", "source", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@click.option("--out", "target", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--processes", type=click.IntRange(min=1), help="Worker processes (default: cores).")
@_ea07_tables_option
def batch_command(
    state: Path,
    kind: str,
    source: Path,
    target: Path,
    processes: int | None,
    ea07_tables: str | None,
) -> None:
    """Tokens for every meter in a CSV or JSON-lines file from the loaded keys (resumable;
    see docs/vending-service.md)."""
    batch.prepare(state, target)  # a bad state folder is refused before the progress bar
    total = token_batch.count_rows(source)
    with click.progressbar(length=total, label="meters", file=sys.stderr) as bar:
        issued, refused = batch.run(
            state,
            kind,
            source,
            target,
            ea07_tables=ea07_tables,
            processes=processes,
            report=sys.stderr,
            progress=bar,
        )
    click.echo(f"{issued} issued, {refused} refused, into {target}")


@main.command("decoder-key")
@_meter_command
def decoder_key(vending: Vending, meter: MeterKey) -> Output:
    """(meter manufacture) Print a meter's decoder key; default keys (KT 0/1) only."""
    key = vending.manufacturing_key(meter)
    return {"pan": meter.pan.digits, "ea": key.ea.value, "decoder_key": key.hex()}, key.hex()


@vend.command("test")
@click.option("--subclass", required=True, type=click.Choice(["0", "1"]))
@click.option("--control", required=True, help="Control field, decimal or 0x-hex.")
@click.option("--manufacturer-code", required=True, help="2 digits (subclass 0) or 4 (subclass 1).")
@_json_option
def vend_test(subclass: str, control: str, manufacturer_code: str, as_json: bool) -> None:
    """A meter test/display token (class 1: no key, no TID, no state)."""
    try:
        value = int(control, 0)
    except ValueError:
        raise click.BadParameter(
            f"{control!r} is not decimal or 0x-hex", param_hint="--control"
        ) from None
    token = meter_test_token(
        MeterTestSubclass(int(subclass)), value, ManufacturerCode(manufacturer_code)
    )
    _emit({"kind": "test", "tokens": [token.digits]}, as_json, token.digits)


@main.command()
@_state_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8443, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--tls-cert",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The service's TLS certificate (PEM, with its chain).",
)
@click.option(
    "--tls-key",
    required=True,
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Its private key (unencrypted PKCS#8 PEM: 'BEGIN PRIVATE KEY').",
)
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Mutual TLS: admit only clients with a certificate from this CA (PEM).",
)
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Bearer tokens (hashed; see `api-token`): every request needs one of them.",
)
@click.option("--kmc", "kmc_url", help="The KMC's base URL, for POST /api/v1/keyload (online).")
@click.option(
    "--kmc-ca",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The CA certificate (PEM) of the KMC's TLS certificate (default: the system's).",
)
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256))
@_ea07_tables_option
def serve(
    state: Path,
    host: str,
    port: int,
    tls_cert: Path,
    tls_key: Path,
    client_ca: Path | None,
    tokens_file: Path | None,
    kmc_url: str | None,
    kmc_ca: Path | None,
    workers: int,
    threads: int,
    ea07_tables: str | None,
) -> None:
    """Serve the vending API over HTTPS (granian; docs/vending-service.md)."""
    from sm_emulator import serving

    if client_ca is None and tokens_file is None:
        raise click.UsageError("give --client-ca (mutual TLS) or --tokens-file (bearer tokens)")
    settings = serving.Settings(
        state, tokens_file=tokens_file, ea07_tables=ea07_tables, kmc_url=kmc_url, kmc_ca=kmc_ca
    )
    serving.serve(
        settings,
        host=host,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        client_ca=client_ca,
        workers=workers,
        threads=threads,
    )


@main.command("api-token")
@click.option("--tokens-file", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Which client the token is for.")
def api_token(tokens_file: Path, name: str) -> None:
    """Make a bearer token for the vending service: printed once, only its hash is stored."""
    from sm_emulator.bearer import add_token

    click.echo(add_token(tokens_file, name))
