"""`kmc audit`: verify, checkpoint and export the tamper-evident audit log."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from flask import current_app

from kmc.audit import service as audit_service
from kmc.command_line import KmcGroup, acting, emit, json_option
from kmc.errors import KMCError
from kmc.permissions import Caller, Permission


@click.group(cls=KmcGroup)
def audit() -> None:
    """The tamper-evident audit log."""


@audit.command("verify")
@json_option
def audit_verify(as_json: bool) -> None:
    """Recompute the hash chain and check signed checkpoints; exit 1 naming the first bad entry."""
    result = audit_service.verify()
    data = result.as_dict()
    if result.ok:
        emit(
            data,
            as_json,
            f"audit chain intact: {data['entries']} entries, head {data['head_seq']} "
            f"{data['head_hash'][:16]}…, {data['checkpoints']} checkpoints verified",
        )
        return
    if result.chain.first_bad_seq is not None:
        message = f"audit chain broken at seq {result.chain.first_bad_seq}: {result.chain.problem}"
    else:
        message = f"audit checkpoint at seq {result.bad_checkpoint} does not match the chain or its signature"
    if as_json:  # the report (`"ok": false`) is the answer; exit 1 as for a refusal
        click.echo(json.dumps(data, indent=2))
        sys.exit(1)
    raise KMCError("audit_broken", message)


@audit.command("checkpoint")
@json_option
@acting(Permission.AUDIT_CHECKPOINT)
def audit_checkpoint(caller: Caller, as_json: bool) -> None:
    """Sign the current chain head with the KMC audit key (run it periodically, e.g. from cron)."""
    cp = audit_service.checkpoint()
    if cp is None:
        emit({"checkpoint": None}, as_json, "audit log is empty; nothing to sign")
        return
    emit(
        {"seq": cp.seq, "entry_hash": cp.entry_hash}, as_json, f"checkpoint signed at seq {cp.seq}"
    )


@audit.command("export")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def audit_export(out: Path) -> None:
    """Write the whole log and its checkpoints as JSON Lines (see docs/audit.md to verify offline)."""
    with out.open("w", encoding="utf-8") as handle:
        handle.writelines(audit_service.export_lines(current_app.config["KMC_MODE"]))
    click.echo(f"wrote {out}")
