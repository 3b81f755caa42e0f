"""The `kmc` command line: the root group, the foundation commands, and every domain group."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import current_app

from key_load.cli import COMMANDS as KEY_LOAD_COMMANDS
from kmc.accounts import service as accounts
from kmc.accounts.models import ROLES
from kmc.audit import service as audit_service
from kmc.command_line import KmcGroup, acting, emit, json_option, system_actor
from kmc.errors import InvalidInput, KMCError
from kmc.instance import initialise
from kmc.pki import current as current_pki
from sm_registry.cli import manufacturer as manufacturer_group
from sm_registry.cli import sm as sm_group
from vending_keys.cli import COMMANDS as VENDING_KEY_COMMANDS


@click.group(cls=KmcGroup)
def main() -> None:
    """STS Key Management Centre: administration from the shell.

    Configuration comes from KMC_INSTANCE, KMC_DATABASE_URL and KMC_MODE (see README).
    """


@main.command()
def init() -> None:
    """Create or upgrade the instance: keys, database, PKI and the bootstrap admin (idempotent).

    It runs before any account exists, so it acts as the system user (`cli:<user>`) in every mode.
    """
    report = initialise(system_actor())
    instance = current_app.config["KMC_INSTANCE"]
    click.echo(f"KMC instance ready at {instance} (mode {current_app.config['KMC_MODE']})")
    if report.created_pki:
        click.echo(f"KMC root certificate: {current_pki().root_pem_path}")
    if report.admin_password:
        click.echo(f"Bootstrap account 'admin' created; one-time password: {report.admin_password}")
        click.echo("It is shown only now; you must change it at first login.")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--threads", default=8, show_default=True, type=click.IntRange(1), help="Threads per process."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Processes. 1: waitress in this process; more: gunicorn forks that many workers.",
)
def serve(host: str, port: int, threads: int, workers: int) -> None:
    """Serve the KMC with a production WSGI server (waitress, or gunicorn with --workers)."""
    # Imported here: the servers take ~40 ms to import and no other command needs them.
    from kmc.serving import serve_single_process, serve_workers

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    server = "waitress" if workers == 1 else f"gunicorn, {workers} workers"
    click.echo(f"KMC ({app.config['KMC_MODE']} mode) serving at http://{host}:{port}/ ({server})")
    sys.stdout.flush()
    if workers == 1:
        serve_single_process(app, host, port, threads)
    else:
        serve_workers(app, host, port, workers, threads)


@main.group()
def user() -> None:
    """Accounts of people and machine clients."""


@user.command("create")
@click.option("--username", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option(
    "--manufacturer", "id_man", metavar="ID_MAN", help="Binds a manufacturer account to its ID_man."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@json_option
@acting("admin")
def user_create(
    actor: str, username: str, role: str, id_man: str | None, password_stdin: bool, as_json: bool
) -> None:
    """Create an account (without --password-stdin a one-time password is generated and shown once)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise InvalidInput("empty_password", "no password on stdin")
        must_change = False
    else:
        password, must_change = accounts.generate_password(), True
    created = accounts.create_user(actor, username, role, password, id_man, must_change=must_change)
    data = {"username": created.username, "role": created.role, "id_man": created.id_man}
    if not password_stdin:
        data["one_time_password"] = password
    emit(
        data,
        as_json,
        lambda: (
            f"created {created.username} ({created.role})"
            + ("" if password_stdin else f"; one-time password: {password}")
        ),
    )


@user.command("list")
@json_option
def user_list(as_json: bool) -> None:
    """List accounts."""
    rows = [
        {
            "username": u.username,
            "role": u.role,
            "id_man": u.id_man,
            "active": u.active,
            "locked": u.locked_until is not None,
        }
        for u in accounts.list_users()
    ]
    emit(
        rows,
        as_json,
        lambda: "\n".join(
            f"{r['username']:<24} {r['role']:<12} {r['id_man'] or '':<6} {'active' if r['active'] else 'disabled'}"
            for r in rows
        ),
    )


@user.command("token")
@click.option("--username", required=True, help="The account the token acts as.")
@click.option("--name", required=True, help="What the token is for (e.g. 'upload script').")
@json_option
@acting("admin")
def user_token(actor: str, username: str, name: str, as_json: bool) -> None:
    """Create an API bearer token; it is printed once and stored only hashed."""
    issued = accounts.create_token(actor, username, name)
    emit(
        {"id": issued.token.id, "username": username, "token": issued.secret},
        as_json,
        issued.secret,
    )


@main.group()
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
@acting("admin", "operator")
def audit_checkpoint(actor: str, as_json: bool) -> None:
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


@main.group()
def ca() -> None:
    """The KMC's own certificate authority."""


def _write_certificate(out: Path, certificate: x509.Certificate) -> None:
    out.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    click.echo(f"wrote {out}")


@ca.command("root")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def ca_root(out: Path) -> None:
    """Write the KMC root certificate (PEM): what SMs, auditors and OpenSSL trust."""
    _write_certificate(out, current_pki().root.certificate)


@ca.command("audit-signer")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def ca_audit_signer(out: Path) -> None:
    """Write the KMC audit signer certificate (PEM), to pin when verifying signed exports.

    Every certificate under the root can sign; OpenSSL accepts a registry export as this KMC's
    only when its signer is this one (`-nointern -certfile`, docs/registry.md).
    """
    _write_certificate(out, current_pki().audit_signer.certificate)


for _group in (*VENDING_KEY_COMMANDS, *KEY_LOAD_COMMANDS):
    main.add_command(_group)


main.add_command(manufacturer_group)
main.add_command(sm_group)
