"""Bringing an instance folder to a working state: keys, database schema, PKI, bootstrap admin."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from flask import current_app
from flask_migrate import upgrade
from sqlalchemy import func, select

from kmc.accounts.models import User
from kmc.accounts.service import create_user, generate_password
from kmc.audit import service as audit
from kmc.database import db, use_case
from kmc.keystore import open_keystore
from kmc.permissions import ADMIN, Caller
from kmc.pki import KmcPki
from kmc.sealing import require_protected_store

BOOTSTRAP_ADMIN = "admin"


@dataclass(frozen=True)
class InitReport:
    created_pki: bool
    admin_password: str | None  # only on the run that created the bootstrap account

    def __repr__(self) -> str:
        return f"InitReport(created_pki={self.created_pki}, admin_created={self.admin_password is not None})"


@use_case
def initialise(actor: str, *, reuse_keys: bool = False) -> InitReport:
    """Idempotent: creates only what is missing, upgrades the schema to the latest migration.

    `reuse_keys` (`kmc hsm init --reuse-keys`) certifies PKI keys a token already holds."""
    require_protected_store()
    instance = current_app.config["KMC_INSTANCE"]
    store = open_keystore(current_app.config, create=True)
    assert store is not None
    current_app.extensions["kmc.keystore"] = store
    upgrade(directory=current_app.extensions["migrate"].directory)

    KmcPki.adopt_copies(instance)
    created_pki = not KmcPki.exists()
    if created_pki:
        pki = KmcPki.create(
            store,
            current_app.config["KMC_NAME"],
            current_app.config["KMC_MODE"],
            reuse_keys=reuse_keys,
        )
        pki.save()
        current_app.extensions["kmc.pki"] = pki
        audit.record(
            actor,
            "pki.create",
            "pki",
            "kmc",
            {
                "root_subject": pki.root.certificate.subject.rfc4514_string(),
                "root_sha256": pki.root.certificate.fingerprint(hashes.SHA256()).hex(),
                "keystore": store.kind,
                "reused_keys": reuse_keys,
            },
        )
    else:
        pki = KmcPki.load(store)
        current_app.extensions["kmc.pki"] = pki
        for name, certificate in pki.add_missing_purposes().items():
            audit.record(
                actor,
                "pki.reissue",
                "pki",
                name,
                {
                    "why": "extended key usage added",
                    "sha256": certificate.fingerprint(hashes.SHA256()).hex(),
                },
            )

    pki.write_copies(instance)
    secret = store.session_secret()
    if secret is not None:
        current_app.config["SECRET_KEY"] = secret

    password = None
    if not db.session.scalar(select(func.count()).select_from(User)):
        password = generate_password()
        # The system user creates the first account: nobody else exists to act yet.
        create_user(Caller(actor, ADMIN), BOOTSTRAP_ADMIN, ADMIN, password, must_change=True)
    return InitReport(created_pki, password)
