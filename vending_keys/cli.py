"""`kmc sgc`, `kmc key`, `kmc keys` and `kmc approvals`: the key store from the shell."""

from __future__ import annotations

from typing import Any

import click

from kmc import clock
from kmc.command_line import FREE_TEXT, NAME, KmcGroup, acting, emit, json_option
from kmc.permissions import Caller, Permission
from vending_keys import service
from vending_keys.domain import (
    DKGAS,
    EAS,
    AuthorisationSpec,
    KeySpec,
    key_identity,
)


def outcome_text(outcome: service.Outcome) -> str:
    if outcome.approval is not None and outcome.approval.state == "pending":
        return (
            f"proposal {outcome.approval.id} ({outcome.approval.subject}) awaits approval "
            "by another user: kmc approvals approve "
            f"{outcome.approval.id} --as USER"
        )
    if outcome.key is not None:
        return (
            f"generated vending key SGC {outcome.key.sgc} KRN {outcome.key.krn} "
            f"KT {outcome.key.kt}; KCV {outcome.key.kcv}"
        )
    assert outcome.authorisation is not None
    auth = outcome.authorisation
    return (
        f"authorised SM {auth.smid} for SGC {auth.key.sgc} KRN {auth.key.krn} KT {auth.key.kt} "
        f"until {auth.iut.isoformat()}"
    )


key_options = [
    click.option("--sgc", required=True, help="Supply group code (6 digits)."),
    click.option("--krn", required=True, type=int, help="Key revision number (1-9)."),
    click.option("--kt", required=True, type=int, help="Key type: 1 VDDK, 2 VUDK, 3 VCDK."),
]


def with_key_options(command: Any) -> Any:
    for option in reversed(key_options):
        command = option(command)
    return command


@click.group(cls=KmcGroup)
def sgc() -> None:
    """Supply groups."""


@sgc.command("add")
@click.option("--sgc", "code", required=True, help="Supply group code (6 digits).")
@click.option("--name", required=True, type=NAME)
@click.option("--utility", default="", type=NAME, help="The utility that owns the supply group.")
@click.option("--cluster", default="", type=NAME)
@json_option
@acting(Permission.KEYS_MANAGE)
def sgc_add(
    caller: Caller, code: str, name: str, utility: str, cluster: str, as_json: bool
) -> None:
    """Add a supply group."""
    group = service.add_supply_group(caller, code, name, utility, cluster)
    emit(
        {"sgc": group.sgc, "name": group.name, "utility": group.utility, "cluster": group.cluster},
        as_json,
        f"added supply group {group.sgc} ({group.name})",
    )


@sgc.command("list")
@json_option
def sgc_list(as_json: bool) -> None:
    """List supply groups."""
    rows = [
        {"sgc": g.sgc, "name": g.name, "utility": g.utility, "cluster": g.cluster}
        for g in service.list_supply_groups()
    ]
    emit(rows, as_json, lambda: "\n".join(f"{r['sgc']} {r['name']} {r['utility']}" for r in rows))


@click.group(cls=KmcGroup)
def key() -> None:
    """Vending keys: generate, authorise for SMs, deactivate, mark compromised."""


@key.command("generate")
@with_key_options
@click.option("--dkga", required=True, type=click.Choice(DKGAS))
@click.option("--ea", "eas", required=True, multiple=True, type=click.Choice(EAS))
@click.option("--base-date", required=True, type=click.Choice(["1993", "2014", "2035"]))
@click.option("--ken", required=True, type=int, help="Key expiry number (0-255).")
@click.option("--act", help="Active from (ISO date/time, UTC); default now.")
@click.option("--exp", help="No key-load files after this (ISO date/time); default ACT + 10 years.")
@click.option("--refresh-days", type=int, help="Key refresh period in days.")
@json_option
@acting(Permission.KEYS_MANAGE)
def key_generate(
    caller: Caller,
    sgc: str,
    krn: int,
    kt: int,
    dkga: str,
    eas: tuple[str, ...],
    base_date: str,
    ken: int,
    act: str | None,
    exp: str | None,
    refresh_days: int | None,
    as_json: bool,
) -> None:
    """Generate a vending key (live mode: propose it for approval); prints the KCV, never the key."""
    spec = KeySpec.from_input(
        sgc=sgc,
        krn=krn,
        kt=kt,
        dkga=dkga,
        eas=eas,
        base_date=int(base_date),
        ken=ken,
        act=act,
        exp=exp,
        refresh_days=refresh_days,
        now=clock.now(),
    )
    outcome = service.propose_key(caller, spec)
    emit(outcome.as_dict(), as_json, outcome_text(outcome))


@key.command("list")
@click.option("--sgc", help="Only this supply group.")
@json_option
def key_list(sgc: str | None, as_json: bool) -> None:
    """List vending keys with their check values."""
    rows = [service.describe_key(k) for k in service.list_keys(sgc)]
    emit(
        rows,
        as_json,
        lambda: "\n".join(
            f"{r['sgc']} KRN {r['krn']} KT {r['kt']} ({r['key_type']}) DKGA{r['dkga']} "
            f"KCV {r['kcv']} {r['state']} EXP {r['exp']}"
            for r in rows
        ),
    )


@key.command("authorize")
@with_key_options
@click.option("--smid", required=True)
@click.option("--iut", help="The SM must not use the key after this (default: the key's EXP).")
@click.option("--clm", help="Currency credit limit (decimal amount).")
@click.option("--resource-limit", type=int, help="Resource limit in units.")
@click.option("--expires", help="This authorisation ends at (ISO date/time).")
@json_option
@acting(Permission.KEYS_MANAGE)
def key_authorize(
    caller: Caller,
    sgc: str,
    krn: int,
    kt: int,
    smid: str,
    iut: str | None,
    clm: str | None,
    resource_limit: int | None,
    expires: str | None,
    as_json: bool,
) -> None:
    """Authorise an active SM for a key (live mode: propose it for approval)."""
    spec = AuthorisationSpec.from_input(
        sgc=sgc,
        krn=krn,
        kt=kt,
        smid=smid,
        iut=iut,
        clm=clm,
        resource_limit=resource_limit,
        expires=expires,
    )
    outcome = service.propose_authorisation(caller, spec)
    emit(outcome.as_dict(), as_json, outcome_text(outcome))


def _change_state(change: str) -> Any:
    @with_key_options
    @click.option("--reason", required=True, type=FREE_TEXT)
    @json_option
    @acting(Permission.KEYS_MANAGE)
    def command(caller: Caller, sgc: str, krn: int, kt: int, reason: str, as_json: bool) -> None:
        identity = key_identity(sgc, krn, kt)
        changed = service.change_key_state(caller, identity, change, reason)
        data = {**service.describe_key(changed.key), "issued_to": changed.issued_to}
        listed = ", ".join(changed.issued_to) or "no SM"
        emit(data, as_json, f"vending key {identity} is {changed.key.state}; issued to: {listed}")

    command.__name__ = f"key_{change}"
    command.__doc__ = {
        "deactivate": "Stop issuing a key (lists the SMs it was issued to).",
        "compromise": "Mark a key compromised: never issued again; lists every SM it went to.",
    }[change]
    return command


key.command("deactivate")(_change_state("deactivate"))
key.command("compromise")(_change_state("compromise"))


@click.group(cls=KmcGroup)
def keys() -> None:
    """Reports over all vending keys."""


@keys.command("expiring")
@click.option("--within", required=True, type=int, help="Days ahead (0 to 36500).")
@json_option
def keys_expiring(within: int, as_json: bool) -> None:
    """Keys near EXP or refresh, authorisations near IUT or expiry (per SGC and per SM)."""
    rows = [w.as_dict() for w in service.expiring(within)]
    emit(
        rows,
        as_json,
        lambda: (
            "\n".join(
                f"{r['at']} {r['what']:<21} SGC {r['sgc']} KRN {r['krn']} KT {r['kt']}"
                + (f" SMID {r['smid']}" if r["smid"] else "")
                for r in rows
            )
            or f"nothing expires within {within} days"
        ),
    )


@click.group(cls=KmcGroup)
def approvals() -> None:
    """Two-person approvals of key generation and authorisation (live mode)."""


@approvals.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include decided proposals.")
@json_option
def approvals_list(show_all: bool, as_json: bool) -> None:
    """List pending proposals."""
    rows = [
        service.describe_approval(a)
        for a in service.list_approvals(None if show_all else "pending")
    ]
    emit(
        rows,
        as_json,
        lambda: (
            "\n".join(
                f"{r['id']:>5} {r['state']:<9} {r['action']:<14} {r['subject']} by {r['proposed_by']}"
                f"\n{'':>6}{_proposal_text(r['payload'])}"
                for r in rows
            )
            or "no pending proposals"
        ),
    )


def _proposal_text(payload: dict[str, Any]) -> str:
    """The proposed values on one line (`-` for none), so an approver sees what they decide."""

    def shown(value: Any) -> str:
        if isinstance(value, list):
            return ",".join(str(v) for v in value)
        return "-" if value is None else str(value)

    return ", ".join(f"{name} {shown(value)}" for name, value in payload.items())


@approvals.command("approve")
@click.argument("approval_id", type=int)
@json_option
@acting(Permission.KEYS_MANAGE)
def approvals_approve(caller: Caller, approval_id: int, as_json: bool) -> None:
    """Approve and carry out another user's proposal."""
    outcome = service.approve(caller, approval_id)
    emit(outcome.as_dict(), as_json, outcome_text(outcome))


@approvals.command("reject")
@click.argument("approval_id", type=int)
@click.option("--reason", required=True, type=FREE_TEXT)
@json_option
@acting(Permission.KEYS_MANAGE)
def approvals_reject(caller: Caller, approval_id: int, reason: str, as_json: bool) -> None:
    """Reject a proposal."""
    approval = service.reject(caller, approval_id, reason)
    emit(service.describe_approval(approval), as_json, f"proposal {approval.id} rejected")


COMMANDS = (sgc, key, keys, approvals)
