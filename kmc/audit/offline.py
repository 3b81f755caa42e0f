"""Verify an exported audit log with no KMC instance: `python -m kmc.audit.offline EXPORT --root ROOT.pem`.

Checks, in order: the audit signer certificate in the export's header was issued by the given KMC
root and is the KMC audit signer (keyUsage digitalSignature, extended key usage
id-kp-kmcAuditSigning: the root also issues the key-load signer and the SM issuing CA, whose keys
must not pass for it); the entries form an unbroken hash chain from GENESIS; every checkpoint's signature verifies
under the audit signer and names an entry hash that is in the chain. Exit 0 when all hold; else
exit 1 with one line naming the first problem.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import click
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from key_load_protocol import ID_KP_KMC_AUDIT_SIGNING
from kmc.audit.chain import ROW_FIELDS, Row, verify_rows

CHECKPOINT_PREFIX = "kmc-audit-checkpoint"


class ExportProblem(Exception):
    pass


def _records(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                raise ExportProblem(f"line {number} is not JSON") from None


def _check_audit_signer(signer: x509.Certificate, root: x509.Certificate) -> None:
    """The certificate in the header is this KMC's audit signer, not just any certificate of it."""
    try:
        signer.verify_directly_issued_by(root)
    except (ValueError, TypeError, InvalidSignature):
        raise ExportProblem(
            "the audit signer certificate was not issued by this KMC root"
        ) from None
    extensions = signer.extensions
    try:
        signs = extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
        purposes = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        signs, purposes = False, x509.ExtendedKeyUsage([])
    if not signs or x509.ObjectIdentifier(ID_KP_KMC_AUDIT_SIGNING) not in purposes:
        raise ExportProblem(
            "the certificate in the export is not the KMC audit signer"
            " (needs keyUsage digitalSignature and extended key usage id-kp-kmcAuditSigning)"
        )


def verify_export(path: Path, root: x509.Certificate) -> str:
    records = list(_records(path))
    if not records or "kmc_audit_export" not in records[0]:
        raise ExportProblem("not a KMC audit export (no header line)")
    header = records[0]["kmc_audit_export"]
    signer = x509.load_pem_x509_certificate(header["audit_signer_certificate"].encode())
    _check_audit_signer(signer, root)
    entries: list[Row] = [tuple(r["entry"][k] for k in ROW_FIELDS) for r in records if "entry" in r]  # type: ignore[misc]
    report = verify_rows(entries)
    if not report.ok:
        raise ExportProblem(f"audit chain broken at seq {report.first_bad_seq}: {report.problem}")
    hashes_by_seq = {row[0]: row[8] for row in entries}
    public_key = signer.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    checkpoints = [r["checkpoint"] for r in records if "checkpoint" in r]
    for cp in checkpoints:
        message = f"{CHECKPOINT_PREFIX}:{cp['seq']}:{cp['entry_hash']}:{cp['at']}".encode()
        try:
            public_key.verify(bytes.fromhex(cp["signature"]), message, ec.ECDSA(hashes.SHA384()))
        except InvalidSignature:
            raise ExportProblem(f"checkpoint at seq {cp['seq']} has a bad signature") from None
        if hashes_by_seq.get(cp["seq"]) != cp["entry_hash"]:
            raise ExportProblem(f"checkpoint at seq {cp['seq']} does not match the exported chain")
    return f"export intact: {report.entries} entries, {len(checkpoints)} signed checkpoints ({header['mode']} KMC)"


@click.command()
@click.argument("export", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--root",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The KMC root certificate (PEM) the auditor trusts.",
)
def main(export: Path, root: Path) -> None:
    """Verify an exported audit log (JSON Lines) offline."""
    try:
        click.echo(verify_export(export, x509.load_pem_x509_certificate(root.read_bytes())))
    except (ExportProblem, KeyError, ValueError) as problem:
        raise click.ClickException(str(problem) or type(problem).__name__) from None


if __name__ == "__main__":
    sys.exit(main())
