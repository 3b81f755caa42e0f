"""Manufacturers and SMs in a KMC app: registered from a real CSR, approved, certified.

`Device` is an SM as a test or benchmark sees it: its private key and the certificate it signs
its VKLOADREQs with (the KMC's, once approved; a self-issued one for SMs the KMC never certified).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask

from factories.csr import make_csr
from key_load_protocol import KeyIdentity, KeyLoadRequest, build_request
from kmc.database import db
from sm_registry import service as registry
from sm_registry.identifiers import CertificationReference
from sm_registry.models import Manufacturer, SecurityModule

ID_MAN = "1A2B"
ADMIN = registry.Caller("admin1", "admin")
CERTIFICATION = CertificationReference("SM-9", "fw", "1.0", "STS-0001")


def add_manufacturer(id_man: str, name: str, created_at: dt.datetime | None = None) -> None:
    """A manufacturer row (in the current app context; the caller commits)."""
    db.session.add(
        Manufacturer(
            id_man=id_man,
            name=name,
            contact="",
            created_at=created_at or dt.datetime.now(dt.UTC),
        )
    )
    db.session.flush()


@dataclass
class Device:
    """An SM as the test sees it: its SMID, its private key and the certificate it signs with."""

    smid: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def request(
        self, keys_wanted: tuple[KeyIdentity, ...] | None = None, at: dt.datetime | None = None
    ) -> bytes:
        request = KeyLoadRequest.new(
            self.smid, keys_wanted, request_time=at or dt.datetime.now(dt.UTC)
        )
        return build_request(request, sm_private_key=self.key, sm_certificate=self.certificate)


def own_certificate(
    smid: str, key: ec.EllipticCurvePrivateKey, key_id: x509.SubjectKeyIdentifier | None = None
) -> x509.Certificate:
    """A self-issued certificate, for devices the KMC never certified (pending, unknown, forged)."""
    name = x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, smid)])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(key_id or x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, True, False, False, False, False), True
        )
        .sign(key, hashes.SHA384())
    )


def register_sm(csr: bytes, kind: str = "virtual") -> None:
    """Register the SM of `csr` for manufacturer 1A2B, pending (in the current app context)."""
    registry.register(
        ADMIN, csr, kind, CERTIFICATION if kind == "certified" else None, as_manufacturer=ID_MAN
    )


def new_device(app: Flask, smid: str, *, kind: str = "virtual", approve: bool = True) -> Device:
    """Register an SM of manufacturer 1A2B from a fresh CSR, and approve it (the KMC certifies it)."""
    key = ec.generate_private_key(ec.SECP384R1())
    with app.app_context():
        register_sm(make_csr(smid, ID_MAN, key, der=True), kind)
        if not approve:
            return Device(smid, key, own_certificate(smid, key))
        registry.change_state(ADMIN, smid, "approve", "test device")
        sm = db.session.get(SecurityModule, smid)
        assert sm is not None and sm.certificate_der is not None
        der = sm.certificate_der
    return Device(smid, key, x509.load_der_x509_certificate(der))
