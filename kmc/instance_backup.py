"""`kmc backup` / `kmc restore`: one consistent, signed and encrypted copy of a running KMC.

A backup is every row of every KMC table, read in one snapshot (PostgreSQL: one SERIALIZABLE
READ ONLY DEFERRABLE transaction; SQLite: the online backup API copies the file in one step
into memory), with what a node needs beside the database: the schema revision, the KMC's name
and mode, the key store kind and token label, and (software store only) the PKI private keys
as the instance folder holds them, sealed under the master key. Keys stay wrapped: vending keys
are the database's sealed blobs, the token's keys never leave it, the master key is not in it.

    KMC-BACKUP 1\\n
    header (JSON, one line)\\n          format, backup id, time, KMC, key store, sealed content
                                        key, nonce
    AES-256-GCM(content key, nonce, associated data = the two lines above):
        signature length (2) | ECDSA-SHA384 signature by the audit signer | gzip(JSON body)

The content key is fresh per backup and sealed by the key store under the identity
`kmc-backup:<id>` (on the token, RFC 5649 wrap, with pkcs11): the backup opens only where the
KMC's keys are usable, which is the only place its wrapped keys mean anything. The signature
covers the header and the body; `restore` checks it with the audit signer certificate of the
backup, that certificate against the backup's root, and that root against the key store's own
root key, then the whole audit chain, all before it commits a row (docs/backup.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import os
import sqlite3
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app
from flask_migrate import upgrade
from sqlalchemy import Connection, Engine, create_engine, func, inspect, select, text
from sqlalchemy.pool import StaticPool

from kmc.audit import service as audit
from kmc.database import db, use_case
from kmc.errors import InvalidInput, KeyStoreError, PolicyRefusal
from kmc.keystore import SIGNING_KEYS
from kmc.keystore import current as keystore_current
from kmc.pki import AUDIT_SIGNING, PKI_DIR, KmcPki, PkiCertificate

MAGIC = b"KMC-BACKUP 1\n"
FORMAT = "kmc-backup-1"
_NONCE = 12


@dataclass(frozen=True)
class BackupReport:
    backup_id: str
    rows: dict[str, int]
    size: int

    def as_dict(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "rows": self.rows, "bytes": self.size}


def _encode(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$b": base64.b64encode(value).decode()}
    if isinstance(value, dt.datetime):
        return {"$t": value.isoformat()}
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        if "$b" in value:
            return base64.b64decode(value["$b"])
        if "$t" in value:
            return dt.datetime.fromisoformat(value["$t"])
    return value


def _read_tables(connection: Connection, progress: Callable[[int], None]) -> dict[str, Any]:
    tables = {}
    for table in db.metadata.sorted_tables:
        rows = connection.execute(select(table).order_by(*table.primary_key.columns)).all()
        tables[table.name] = {
            "columns": [c.name for c in table.columns],
            "rows": [[_encode(v) for v in row] for row in rows],
        }
        progress(1)
    return tables


def _snapshot(engine: Engine, progress: Callable[[int], None]) -> dict[str, Any]:
    """Every row as of one instant, whatever writers do meanwhile."""
    if engine.dialect.name == "sqlite":
        copy = sqlite3.connect(":memory:", check_same_thread=False)
        with engine.connect() as connection:
            source = connection.connection.driver_connection
            assert isinstance(source, sqlite3.Connection)
            source.backup(copy)  # one step: the pages of one read transaction
        reader = create_engine("sqlite://", creator=lambda: copy, poolclass=StaticPool)
        try:
            with reader.connect() as connection:
                return _read_tables(connection, progress)
        finally:
            reader.dispose()
            copy.close()
    snapshot = engine.connect().execution_options(
        isolation_level="SERIALIZABLE", postgresql_readonly=True, postgresql_deferrable=True
    )
    with snapshot as connection, connection.begin():
        return _read_tables(connection, progress)


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _head() -> str | None:
    script = ScriptDirectory(current_app.extensions["migrate"].directory)
    return script.get_current_head()


def _node_configuration() -> dict[str, Any]:
    config = current_app.config
    pki_folder = Path(config["KMC_INSTANCE"]) / PKI_DIR
    sealed_keys = {
        name: base64.b64encode((pki_folder / f"{name}.key.sealed").read_bytes()).decode()
        for name in SIGNING_KEYS
        if (pki_folder / f"{name}.key.sealed").exists()
    }
    return {
        "kmc_name": config["KMC_NAME"],
        "kmc_mode": config["KMC_MODE"],
        "keystore": config["KMC_KEYSTORE"],
        "pkcs11_token": config["KMC_PKCS11_TOKEN"] or None,
        "sealed_pki_keys": sealed_keys,
    }


def write_backup(out: Path, actor: str, progress: Callable[[int], None]) -> BackupReport:
    """Snapshot, sign, encrypt and write to `out` (created 0600, never overwritten)."""
    from kmc.pki import current as current_pki

    store = keystore_current()
    signer = current_pki().audit_signer
    revision = _revision(db.session.connection())
    db.session.rollback()  # read only so far; SQLite writers must not wait for this session
    tables = _snapshot(db.engine, progress)
    backup_id = str(uuid.uuid4())
    content_key = AESGCM.generate_key(256)
    nonce = os.urandom(_NONCE)
    header = {
        "format": FORMAT,
        "backup_id": backup_id,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "kmc_name": current_app.config["KMC_NAME"],
        "keystore": store.kind,
        "sealed_key": base64.b64encode(
            store.seal(content_key, f"kmc-backup:{backup_id}".encode())
        ).decode(),
        "nonce": base64.b64encode(nonce).decode(),
    }
    head = MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n"
    body = gzip.compress(
        json.dumps(
            {"revision": revision, "configuration": _node_configuration(), "tables": tables},
            sort_keys=True,
        ).encode()
    )
    signature = signer.sign(head + body)
    sealed = AESGCM(content_key).encrypt(
        nonce, len(signature).to_bytes(2, "big") + signature + body, head
    )
    data = head + sealed
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    rows = {name: len(t["rows"]) for name, t in tables.items()}
    _record_backup(actor, backup_id, sum(rows.values()))
    return BackupReport(backup_id, rows, len(data))


@use_case
def _record_backup(actor: str, backup_id: str, rows: int) -> None:
    audit.record(actor, "kmc.backup", "kmc", backup_id, {"rows": rows})


# -- restore -----------------------------------------------------------------------------


def _refuse(message: str) -> PolicyRefusal:
    return PolicyRefusal("backup_refused", message)


def _open(data: bytes) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """(header, body, signed bytes, signature), or a refusal: nothing is trusted before this."""
    if not data.startswith(MAGIC):
        raise _refuse("not a KMC backup")
    end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC) : end]) if end > 0 else None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError("not a backup header")
        sealed_key = base64.b64decode(header["sealed_key"], validate=True)
        nonce = base64.b64decode(header["nonce"], validate=True)
        backup_id = str(header["backup_id"])
    except (ValueError, KeyError, TypeError):
        raise _refuse("the backup header is damaged or truncated") from None
    head = data[: end + 1]
    try:
        content_key = keystore_current().open(sealed_key, f"kmc-backup:{backup_id}".encode())
    except KeyStoreError:
        raise _refuse(
            "the backup's content key does not open under this key store "
            "(another KMC's backup, or the header was altered)"
        ) from None
    try:
        plain = AESGCM(content_key).decrypt(nonce, data[end + 1 :], head)
    except (InvalidTag, ValueError):
        raise _refuse("the backup is truncated or altered (authentication failed)") from None
    length = int.from_bytes(plain[:2], "big")
    signature, packed = plain[2 : 2 + length], plain[2 + length :]
    try:
        body = json.loads(gzip.decompress(packed))
    except (OSError, ValueError):
        raise _refuse("the backup body does not decode") from None
    return header, body, head + packed, signature


def _certificates(body: dict[str, Any]) -> dict[str, x509.Certificate]:
    table = body["tables"].get(PkiCertificate.__tablename__, {"columns": [], "rows": []})
    index = {c: i for i, c in enumerate(table["columns"])}
    try:
        return {
            row[index["name"]]: x509.load_pem_x509_certificate(row[index["pem"]].encode())
            for row in table["rows"]
        }
    except (KeyError, ValueError):
        raise _refuse("the backup's PKI certificates do not load") from None


def _check_signature(signed: bytes, signature: bytes, certificates: dict[str, Any]) -> None:
    root, signer = certificates.get("root"), certificates.get("audit")
    if root is None or signer is None:
        raise _refuse("the backup holds no root or audit signer certificate")
    public = signer.public_key()
    try:
        signer.verify_directly_issued_by(root)
        usage = signer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if AUDIT_SIGNING not in usage or not isinstance(public, ec.EllipticCurvePublicKey):
            raise TypeError("not the audit signer")
        public.verify(signature, signed, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, x509.ExtensionNotFound, ValueError, TypeError):
        raise _refuse("the backup's signature is not its audit signer's") from None


def _is_empty(connection: Connection) -> bool:
    present = set(inspect(connection).get_table_names())
    return not any(
        connection.scalar(select(func.count()).select_from(table))
        for table in db.metadata.sorted_tables
        if table.name in present
    )


def _write_sealed_keys(instance: Path, sealed: dict[str, str]) -> list[Path]:
    folder = instance / PKI_DIR
    written = []
    for name, blob in sealed.items():
        path = folder / f"{name}.key.sealed"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(base64.b64decode(blob))
            written.append(path)
    return written


def _reset_sequences(connection: Connection) -> None:
    """PostgreSQL: the next id of each table follows the restored rows."""
    if connection.dialect.name != "postgresql":
        return
    for table in db.metadata.sorted_tables:
        for column in table.primary_key.columns:
            if column.autoincrement is True or (
                column.autoincrement == "auto" and column.type.python_type is int
            ):
                connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "
                        f'COALESCE(MAX("{column.name}"), 1), MAX("{column.name}") IS NOT NULL) '
                        f'FROM "{table.name}"'
                    )
                )


@use_case
def _insert(body: dict[str, Any], actor: str, backup_id: str) -> int:
    connection = db.session.connection()
    count = 0
    for table in db.metadata.sorted_tables:
        stored = body["tables"].get(table.name)
        if not stored or not stored["rows"]:
            continue
        rows = [
            dict(zip(stored["columns"], [_decode(v) for v in row], strict=True))
            for row in stored["rows"]
        ]
        connection.execute(table.insert(), rows)
        count += len(rows)
    _reset_sequences(connection)
    current_app.extensions["kmc.pki"] = KmcPki.load(keystore_current())
    report = audit.verify()
    if not report.ok:
        problem = report.chain.problem or f"checkpoint {report.bad_checkpoint} does not match"
        raise _refuse(f"the backup's audit chain does not verify: {problem}")
    audit.record(actor, "kmc.restore", "kmc", backup_id, {"rows": count})
    return count


def _keystore() -> Any:
    try:
        return keystore_current()
    except KeyStoreError:
        raise _refuse(
            "restore needs this KMC's key store: the same token (KMC_KEYSTORE=pkcs11) or, with "
            "the software store, its master.key in the instance folder"
        ) from None


def restore_backup(path: Path, actor: str) -> dict[str, Any]:
    """Check the backup whole, then write every row in one transaction (or nothing)."""
    _keystore()
    header, body, signed, signature = _open(path.read_bytes())
    certificates = _certificates(body)
    _check_signature(signed, signature, certificates)
    if body.get("revision") != _head():
        raise _refuse(
            f"the backup is of schema {body.get('revision')}, this KMC is at {_head()}: "
            "restore with the same KMC version"
        )
    with db.engine.connect() as connection:
        if not _is_empty(connection):
            raise InvalidInput("not_empty", "restore needs an empty database")
    instance = Path(current_app.config["KMC_INSTANCE"])
    written = _write_sealed_keys(instance, body["configuration"].get("sealed_pki_keys", {}))
    try:
        store = _keystore()
        root_key = store.signing_key("root").public_key()
        if root_key != certificates["root"].public_key():
            raise _refuse("the backup's root is not certified for this key store's root key")
        upgrade(directory=current_app.extensions["migrate"].directory)
        rows = _insert(body, actor, header["backup_id"])
    except BaseException:
        for path_written in written:
            path_written.unlink()
        raise
    current_app.extensions["kmc.pki"].write_copies(instance)
    return {"backup_id": header["backup_id"], "rows": rows, "created_at": header["created_at"]}
