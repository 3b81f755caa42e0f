"""`kmc init`, `kmc serve` and `kmc ca`: set up the instance, serve it, hand out its CA certificates."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import current_app

from kmc.command_line import KmcCommand, KmcGroup, emit, json_option, system_actor
from kmc.custodians.cli import unseal_this_process
from kmc.database import db
from kmc.errors import InvalidInput
from kmc.headers import require_secure_transport
from kmc.instance import initialise
from kmc.keystore import current as keystore_current
from kmc.permissions import ADMIN, Caller
from kmc.pki import current as current_pki
from kmc.sealing import require_protected_store

_unseal_option = click.option(
    "--unseal",
    is_flag=True,
    help="On a KMC split among custodians: unseal this process first with M shares read from "
    "stdin, one a line (each entry audited).",
)


def _unseal_if(unseal: bool) -> None:
    if unseal:
        unseal_this_process(Caller(system_actor(), ADMIN))


@click.command(cls=KmcCommand)
@_unseal_option
def init(unseal: bool) -> None:
    """Create or upgrade the instance: keys, database, PKI and the bootstrap admin (idempotent).

    It runs before any account exists, so it acts as the system user (`cli:<user>`) in every mode.
    A KMC split among custodians is sealed in this process too: upgrade it with --unseal.
    """
    _unseal_if(unseal)
    report = initialise(system_actor())
    instance = current_app.config["KMC_INSTANCE"]
    click.echo(f"KMC instance ready at {instance} (mode {current_app.config['KMC_MODE']})")
    if report.created_pki:
        click.echo(f"KMC root certificate: {instance / 'pki' / 'root.pem'} (a copy)")
    if report.admin_password:
        click.echo(f"Bootstrap account 'admin' created; one-time password: {report.admin_password}")
        click.echo("It is shown only now; you must change it at first login.")


@click.command(cls=KmcCommand)
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
@click.option(
    "--access-log",
    metavar="FILE",
    help="With --workers 2+: one line per request (with the worker's pid) to FILE, - for stdout.",
)
def serve(host: str, port: int, threads: int, workers: int, access_log: str | None) -> None:
    """Serve the KMC with a production WSGI server (waitress, or gunicorn with --workers)."""
    # Imported here: the servers take ~40 ms to import and no other command needs them.
    from kmc.serving import serve_single_process, serve_workers

    if access_log and workers == 1:
        raise InvalidInput("usage", "--access-log needs --workers 2 or more (gunicorn)")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    require_protected_store()
    require_secure_transport(app)
    server = "waitress" if workers == 1 else f"gunicorn, {workers} workers"
    click.echo(f"KMC ({app.config['KMC_MODE']} mode) serving at http://{host}:{port}/ ({server})")
    sys.stdout.flush()
    if workers == 1:
        serve_single_process(app, host, port, threads)
    else:
        serve_workers(app, host, port, workers, threads, access_log)


@click.group(cls=KmcGroup)
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


@click.group(cls=KmcGroup)
def hsm() -> None:
    """The PKCS#11 token holding the KMC's keys (KMC_KEYSTORE=pkcs11)."""


def _require_pkcs11() -> None:
    if current_app.config["KMC_KEYSTORE"] != "pkcs11":
        raise InvalidInput("not_pkcs11", "KMC_KEYSTORE is not pkcs11: there is no token to use")


@hsm.command("init")
@click.option(
    "--reuse-keys",
    is_flag=True,
    help="Certify the KMC keys the token already holds instead of refusing.",
)
def hsm_init(reuse_keys: bool) -> None:
    """Create the KMC's keys on the token, then everything `kmc init` does (idempotent).

    Refuses when the token already holds KMC keys that this instance has not certified,
    unless --reuse-keys.
    """
    _require_pkcs11()
    report = initialise(system_actor(), reuse_keys=reuse_keys)
    click.echo(f"KMC keys on token {current_app.config['KMC_PKCS11_TOKEN']!r}")
    if report.admin_password:
        click.echo(f"Bootstrap account 'admin' created; one-time password: {report.admin_password}")


@hsm.command("status")
@json_option
def hsm_status(as_json: bool) -> None:
    """The key store: token, KMC key labels and attributes, what runs on the token."""
    data = keystore_current().describe()

    def text() -> str:
        lines = [f"key store: {data['keystore']}"]
        if "token" in data:
            token = data["token"]
            lines.append(f"token: {token['label']} ({token['manufacturer']} {token['model']})")
            for key in data["keys"]:
                access = ("sensitive" if key["sensitive"] else "NOT sensitive") + (
                    ", EXTRACTABLE" if key["extractable"] else ", never extractable"
                )
                lines.append(f"  {key['label']}: {key['class']}, {access}")
        lines.append(f"on the token: {', '.join(data['on_token']) or 'nothing'}")
        lines.append(f"in this process: {', '.join(data['in_process'])}")
        return "\n".join(lines)

    emit(data, as_json, text)


@click.group(cls=KmcGroup)
def keystore() -> None:
    """Where the KMC's keys live (KMC_KEYSTORE)."""


@keystore.command("migrate")
@click.option(
    "--to",
    "target",
    type=click.Choice(["pkcs11"]),
    required=True,
    help="The back end to move to (the token KMC_PKCS11_* names).",
)
@click.option(
    "--batch",
    default=100,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Vending keys re-wrapped per transaction (and per audit entry).",
)
@_unseal_option
@json_option
def keystore_migrate(target: str, batch: int, unseal: bool, as_json: bool) -> None:
    """Move a software KMC onto the token: PKI keys imported, vending keys re-wrapped (KCVs
    checked), then the master key file destroyed. Resumable: run it again after a failure.

    Run it with the KMC stopped and KMC_KEYSTORE=software; afterwards run with KMC_KEYSTORE=pkcs11.
    """
    from kmc.instance_migrate import Migration

    _unseal_if(unseal)
    migration = Migration.prepare()
    with click.progressbar(
        length=len(migration.pending), label="re-wrapping vending keys", file=sys.stderr
    ) as bar:
        report = migration.run(system_actor(), batch, bar.update)
    data = report.as_dict()

    def text() -> str:
        lines = [f"KMC keys moved to token {report.token_label!r}"]
        lines += [f"  {name}: {how}" for name, how in report.signing_keys.items()]
        lines.append(
            f"vending keys re-wrapped: {report.keys_rewrapped}; "
            f"verified against their KCVs: {report.keys_verified}"
        )
        lines.append(f"destroyed: {', '.join(report.destroyed) or 'nothing left to destroy'}")
        lines.append("From now on run the KMC with KMC_KEYSTORE=pkcs11 (README, Configuration).")
        return "\n".join(lines)

    emit(data, as_json, text)


@click.command(cls=KmcCommand)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="New file."
)
@json_option
def backup(out: Path, as_json: bool) -> None:
    """Write a consistent, signed and encrypted backup of this KMC (docs/backup.md)."""
    from kmc.instance_backup import write_backup

    if out.exists():
        raise InvalidInput("exists", f"{out} exists: a backup never overwrites a file")
    tables = len(db.metadata.sorted_tables)
    with click.progressbar(
        length=tables, label="backing up", file=sys.stderr, hidden=as_json
    ) as bar:
        report = write_backup(out, system_actor(), bar.update)
    emit(
        report.as_dict(),
        as_json,
        lambda: (
            f"wrote {out}: backup {report.backup_id}, "
            f"{sum(report.rows.values())} rows, {report.size} bytes"
        ),
    )


@click.command(cls=KmcCommand)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def restore(file: Path, as_json: bool) -> None:
    """Restore a backup into this empty KMC, after checking its signature and audit chain."""
    from kmc.instance_backup import restore_backup

    result = restore_backup(file, system_actor())
    emit(
        result,
        as_json,
        lambda: (
            f"restored backup {result['backup_id']} of {result['created_at']}: "
            f"{result['rows']} rows, audit chain verified"
        ),
    )
