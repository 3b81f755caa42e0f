"""The auditor's export of ID_man → SMID allocations (CSV or JSON) and its detached CMS signature.

Format version 1 is documented in docs/registry.md ("Export"). The signature is a DER CMS
SignedData over the exact file bytes, content detached, by the KMC audit signer (ECDSA P-384,
SHA-384, signer certificate included), which `openssl cms -verify -binary` checks against the
KMC root with that signer pinned (`-nointern -certfile`; any SM certificate chains to the root).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from kmc.errors import InvalidInput
from kmc.pki import Signer
from sm_registry.inspection import KeyLoad
from sm_registry.models import SecurityModule

FORMATS = ("csv", "json")
FORMAT_NAME = "kmc-sm-registry-export"
FORMAT_VERSION = 1
CSV_COLUMNS = (
    "smid",
    "id_man",
    "manufacturer",
    "kind",
    "certification_model",
    "certification_firmware",
    "certification_version",
    "certification_number",
    "state",
    "registered_at",
    "registered_by",
    "public_key_sha256",
    "certificate_sha256",
    "history",
)


def iso_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class ExportHeader:
    """Where and when the export was made, and from which records (filters)."""

    kmc_name: str
    kmc_mode: str
    generated_at: dt.datetime
    generated_by: str
    filters: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "kmc": self.kmc_name,
            "kmc_mode": self.kmc_mode,
            "generated_at": iso_time(self.generated_at),
            "generated_by": self.generated_by,
            "filters": self.filters,
        }


@dataclass(frozen=True)
class ExportRecord:
    """One SM as the export shows it."""

    smid: str
    id_man: str
    manufacturer: str
    kind: str
    certification: dict[str, str] | None
    state: str
    registered_at: str
    registered_by: str
    public_key_sha256: str
    certificate_sha256: str | None
    history: list[dict[str, str | None]]


def record_of(sm: SecurityModule, as_of: dt.datetime | None = None) -> ExportRecord:
    """The SM as exports, the API and `kmc sm list --json` show it; with `as_of`, as it stood
    then (the history up to that moment, the state it gave, no certificate while pending)."""
    events = [e for e in sm.events if as_of is None or e.at <= as_of]
    state = events[-1].to_state if as_of is not None and events else sm.state
    certification = None
    if sm.cert_model is not None:
        certification = {
            "model": sm.cert_model,
            "firmware": sm.cert_firmware or "",
            "version": sm.cert_firmware_version or "",
            "number": sm.cert_number or "",
        }
    certificate_sha256 = None
    if sm.certificate_der is not None and state != "pending":
        certificate_sha256 = hashlib.sha256(sm.certificate_der).hexdigest()
    return ExportRecord(
        smid=sm.smid,
        id_man=sm.id_man,
        manufacturer=sm.manufacturer.name,
        kind=sm.kind,
        certification=certification,
        state=state,
        registered_at=iso_time(sm.registered_at),
        registered_by=sm.registered_by,
        public_key_sha256=sm.public_key_sha256,
        certificate_sha256=certificate_sha256,
        history=[
            {
                "at": iso_time(e.at),
                "from": e.from_state,
                "to": e.to_state,
                "actor": e.actor,
                "reason": e.reason,
            }
            for e in events
        ],
    )


def _json_bytes(header: ExportHeader, security_modules: list[dict[str, Any]]) -> bytes:
    document = {**header.as_dict(), "security_modules": security_modules}
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def _json(header: ExportHeader, records: list[ExportRecord]) -> bytes:
    return _json_bytes(header, [asdict(r) for r in records])


def inspection_json(
    header: ExportHeader,
    records: list[ExportRecord],
    key_loads: Mapping[str, Sequence[KeyLoad]],
) -> bytes:
    """The inspection export: the JSON export with, in each SM's record, the key-load files
    issued to it (`key_loads`, oldest first; docs/registry.md, "The inspection report")."""
    return _json_bytes(
        header,
        [
            {
                **asdict(r),
                "key_loads": [
                    {
                        "at": iso_time(load.at),
                        "sequence": load.sequence,
                        "keys": load.keys,
                        "file_sha256": load.file_sha256,
                    }
                    for load in key_loads[r.smid]
                ],
            }
            for r in records
        ],
    )


def _csv(header: ExportHeader, records: list[ExportRecord]) -> bytes:
    out = io.StringIO()
    meta = header.as_dict()
    out.write(
        "# "
        + "; ".join(
            f"{k}={json.dumps(v, separators=(',', ':')) if isinstance(v, dict) else v}"
            for k, v in meta.items()
        )
        + "\n"
    )
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in records:
        c = r.certification or {}
        writer.writerow(
            (
                r.smid,
                r.id_man,
                r.manufacturer,
                r.kind,
                c.get("model", ""),
                c.get("firmware", ""),
                c.get("version", ""),
                c.get("number", ""),
                r.state,
                r.registered_at,
                r.registered_by,
                r.public_key_sha256,
                r.certificate_sha256 or "",
                json.dumps(r.history, separators=(",", ":"), ensure_ascii=False),
            )
        )
    return out.getvalue().encode()


def render(fmt: str, header: ExportHeader, records: list[ExportRecord]) -> bytes:
    if fmt == "json":
        return _json(header, records)
    if fmt == "csv":
        return _csv(header, records)
    raise InvalidInput("bad_format", f"export format must be one of {', '.join(FORMATS)}")


def sign_detached(signer: Signer, content: bytes) -> bytes:
    """DER CMS SignedData over `content` (detached, binary: no MIME canonicalisation)."""
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(content)
        .add_signer(signer.certificate, signer.key, hashes.SHA384())
        .sign(
            serialization.Encoding.DER,
            [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary],
        )
    )
