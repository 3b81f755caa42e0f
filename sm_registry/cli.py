"""`kmc manufacturer ...` and `kmc sm ...`: the registry from the shell."""

from __future__ import annotations

import datetime as dt
import sys
from dataclasses import asdict
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from kmc.command_line import (
    FREE_TEXT,
    NAME,
    KmcGroup,
    acting,
    emit,
    json_option,
    resolve_caller,
    system_actor,
)
from kmc.permissions import ADMIN, Caller, Permission
from sm_registry import service
from sm_registry.bulk import items_at
from sm_registry.export import FORMATS, record_of
from sm_registry.identifiers import KINDS, CertificationReference
from sm_registry.models import SM_STATES, SecurityModule


def _certification(text: str | None) -> CertificationReference | None:
    return CertificationReference.parse(text) if text else None


def _line(sm: SecurityModule) -> str:
    return f"{sm.smid:<17} {sm.id_man:<5} {sm.kind:<10} {sm.state:<10} {sm.registered_at:%Y-%m-%d %H:%M} {sm.registered_by}"


@click.group(cls=KmcGroup)
def manufacturer() -> None:
    """SM manufacturers and their ID_man."""


@manufacturer.command("add")
@click.option("--id-man", required=True, help="4 hexadecimal digits.")
@click.option("--name", required=True, type=NAME)
@click.option(
    "--contact", default="", type=FREE_TEXT, help="Who to call about this manufacturer's SMs."
)
@json_option
@acting(Permission.MANUFACTURERS_MANAGE)
def manufacturer_add(caller: Caller, id_man: str, name: str, contact: str, as_json: bool) -> None:
    """Create a manufacturer."""
    made = service.create_manufacturer(caller, id_man, name, contact)
    emit(
        {"id_man": made.id_man, "name": made.name, "contact": made.contact},
        as_json,
        f"manufacturer {made.id_man} ({made.name}) created",
    )


@manufacturer.command("list")
@json_option
def manufacturer_list(as_json: bool) -> None:
    """List manufacturers."""
    rows = [
        {"id_man": m.id_man, "name": m.name, "contact": m.contact}
        for m in service.list_manufacturers(Caller(system_actor(), ADMIN))
    ]
    emit(
        rows,
        as_json,
        lambda: "\n".join(f"{r['id_man']}  {r['name']:<40} {r['contact']}" for r in rows),
    )


@click.group(cls=KmcGroup)
def sm() -> None:
    """Security Modules: registration, lifecycle, certificates, signed exports."""


_kind = click.option("--kind", required=True, type=click.Choice(KINDS))
_certification_option = click.option(
    "--certification",
    type=FREE_TEXT,
    metavar="REF",
    help="For certified SMs: model=...,firmware=...,version=...,number=...",
)
_as_manufacturer = click.option(
    "--as-manufacturer", metavar="ID_MAN", help="(admins) the manufacturer the SMs belong to."
)


@sm.command("register")
@click.option(
    "--csr", "csr_file", required=True, type=click.Path(dir_okay=False, exists=True, path_type=Path)
)
@_kind
@_certification_option
@_as_manufacturer
@json_option
@acting(Permission.SMS_REGISTER)
def sm_register(
    caller: Caller,
    csr_file: Path,
    kind: str,
    certification: str | None,
    as_manufacturer: str | None,
    as_json: bool,
) -> None:
    """Register one SM from its CSR (PEM or DER, signed by the SM key); it starts pending."""
    registered = service.register(
        caller,
        csr_file.read_bytes(),
        kind,
        _certification(certification),
        as_manufacturer,
    )
    emit(
        asdict(record_of(registered)),
        as_json,
        f"SM {registered.smid} registered for {registered.id_man} ({registered.kind}); pending approval",
    )


@sm.command("register-bulk")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_kind
@_certification_option
@_as_manufacturer
@json_option
@acting(Permission.SMS_REGISTER)
def sm_register_bulk(
    caller: Caller,
    path: Path,
    kind: str,
    certification: str | None,
    as_manufacturer: str | None,
    as_json: bool,
) -> None:
    """Register every CSR in a zip archive or folder; each file gets its own verdict.

    Exits 1 when any item was refused (the accepted ones stay registered).
    """
    caller, reference = caller, _certification(certification)
    count, items = items_at(path)
    results = []
    with click.progressbar(
        service.register_many(caller, items, kind, reference, as_manufacturer),
        length=count,
        label="registering",
        file=sys.stderr,
    ) as progress:
        for result in progress:
            results.append(result)
    accepted = sum(r.accepted for r in results)
    refused = [r for r in results if not r.accepted]
    emit(
        {"accepted": accepted, "refused": len(refused), "items": [r.as_dict() for r in results]},
        as_json,
        lambda: "\n".join(
            [f"{accepted} accepted, {len(refused)} refused (of {len(results)})"]
            + [f"refused {r.name}: {r.message}" for r in refused]
        ),
    )
    if refused:
        sys.exit(1)


def _transition(action: str) -> None:
    @sm.command(action)
    @click.argument("smid")
    @click.option(
        "--reason",
        required=True,
        type=FREE_TEXT,
        help="Recorded in the audit log and the SM history.",
    )
    @json_option
    @acting(Permission.SMS_CHANGE_STATE)
    def command(caller: Caller, smid: str, reason: str, as_json: bool) -> None:
        changed = service.change_state(caller, smid, action, reason)
        emit(
            {"smid": changed.smid, "state": changed.state},
            as_json,
            f"SM {changed.smid} is now {changed.state}",
        )

    command.__doc__ = {
        "approve": "Approve a pending SM: issue its certificate and make it active.",
        "suspend": "Suspend an active SM (no key loads until resumed).",
        "resume": "Make a suspended SM active again.",
        "revoke": "Revoke an SM for good; its public key stays bound to it.",
    }[action]


for _action in service.TRANSITIONS:
    _transition(_action)


@sm.command("online-keyload")
@click.argument("smid")
@click.option(
    "--enable/--disable", "enabled", required=True, help="Let the SM load online, or not."
)
@click.option("--reason", required=True, help="Recorded in the audit log.")
@json_option
@acting(Permission.SMS_ONLINE_KEYLOAD)
def online_keyload(caller: Caller, smid: str, enabled: bool, reason: str, as_json: bool) -> None:
    """Let an SM send its own VKLOADREQs to the KMC (POST /api/v1/sm/keyload), or stop it."""
    changed = service.set_online_keyload(caller, smid, enabled, reason)
    emit(
        {"smid": changed.smid, "online_keyload": changed.online_keyload},
        as_json,
        f"online key loading for SM {changed.smid} is now {'on' if changed.online_keyload else 'off'}",
    )


_filters = (
    click.option("--id-man", help="Only this manufacturer."),
    click.option("--smid", help="Only this SMID."),
    click.option("--state", type=click.Choice(SM_STATES)),
    click.option(
        "--since", type=click.DateTime(["%Y-%m-%d"]), help="Registered on or after (UTC day)."
    ),
    click.option(
        "--until", type=click.DateTime(["%Y-%m-%d"]), help="Registered on or before (UTC day)."
    ),
)


def _filter(
    id_man: str | None,
    smid: str | None,
    state: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
) -> service.SmFilter:
    return service.SmFilter(
        id_man, smid, state, since.date() if since else None, until.date() if until else None
    )


def _with_filters(command: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_filters):
        command = option(command)
    return command


@sm.command("list")
@_with_filters
@json_option
def sm_list(
    id_man: str | None,
    smid: str | None,
    state: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    as_json: bool,
) -> None:
    """List SMs with their manufacturer, kind, state and history."""
    sms = service.list_sms(
        Caller(system_actor(), ADMIN), _filter(id_man, smid, state, since, until)
    )
    emit(
        [asdict(record_of(s)) for s in sms],
        as_json,
        lambda: "\n".join(_line(s) for s in sms) or "no SMs",
    )


@sm.command("cert")
@click.argument("smid")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--with-chain", is_flag=True, help="Append the SM Issuing CA certificate.")
def sm_cert(smid: str, out: Path, with_chain: bool) -> None:
    """Write an approved SM's certificate (PEM)."""
    chain = service.certificate_chain(smid)
    out.write_bytes(
        chain.pem() if with_chain else chain.certificate.public_bytes(serialization.Encoding.PEM)
    )
    click.echo(f"wrote {out}")


@sm.command("export")
@click.option("--format", "fmt", required=True, type=click.Choice(FORMATS))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
@_with_filters
@click.option(
    "--as", "as_user", type=NAME, metavar="USERNAME", help="Account to record as the exporter."
)
def sm_export(
    fmt: str,
    out: Path,
    id_man: str | None,
    smid: str | None,
    state: str | None,
    since: dt.datetime | None,
    until: dt.datetime | None,
    as_user: str | None,
) -> None:
    """Write the signed allocation records: FILE, and FILE.sig (detached CMS, DER)."""
    # Read-only for the registry, so no account is demanded even in live mode; it is audited.
    caller = resolve_caller(as_user, Permission.REGISTRY_READ, live_needs_account=False)
    signed = service.export_registry(caller, fmt, _filter(id_man, smid, state, since, until))
    out.write_bytes(signed.content)
    signature = out.with_name(out.name + ".sig")
    signature.write_bytes(signed.signature)
    click.echo(f"wrote {out} and {signature} ({signed.mode} KMC)")
