"""Registry tables."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kmc.database import UTCDateTime, db


class Manufacturer(db.Model):
    """An SM manufacturer, identified by its ID_man (4 hex digits, stored upper case)."""

    __tablename__ = "manufacturers"

    id_man: Mapped[str] = mapped_column(String(4), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    contact: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


SM_KINDS = ("certified", "virtual")
SM_STATES = ("pending", "active", "suspended", "revoked")


class SecurityModule(db.Model):
    """One SM bound to one manufacturer under one P-384 public key, for ever (STS 600-10-1 §4.5)."""

    __tablename__ = "security_modules"

    smid: Mapped[str] = mapped_column(String(16), primary_key=True)
    id_man: Mapped[str] = mapped_column(
        String(4), ForeignKey("manufacturers.id_man"), nullable=False
    )
    kind: Mapped[str] = mapped_column(String(10), nullable=False)
    state: Mapped[str] = mapped_column(String(10), nullable=False, default="pending")
    # SubjectPublicKeyInfo DER and its SHA-256: the unique constraint is what makes
    # "one public key, one SMID" hold even for revoked SMs and racing registrations.
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    public_key_sha256: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    cert_model: Mapped[str | None] = mapped_column(String(120), nullable=True)
    cert_firmware: Mapped[str | None] = mapped_column(String(120), nullable=True)
    cert_firmware_version: Mapped[str | None] = mapped_column(String(60), nullable=True)
    cert_number: Mapped[str | None] = mapped_column(String(120), nullable=True)
    csr_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    registered_by: Mapped[str] = mapped_column(String(120), nullable=False)
    # Whether the SM may send its own VKLOADREQ to /api/v1/sm/keyload (an operator decides;
    # on at registration in a test KMC, off in a live one).
    online_keyload: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )

    manufacturer: Mapped[Manufacturer] = relationship()
    events: Mapped[list[SmStateEvent]] = relationship(
        back_populates="sm", order_by="SmStateEvent.id"
    )


class SmStateEvent(db.Model):
    """The state history of an SM, for auditors (the audit log holds the same, hash-chained)."""

    __tablename__ = "sm_state_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    smid: Mapped[str] = mapped_column(
        ForeignKey("security_modules.smid"), nullable=False, index=True
    )
    from_state: Mapped[str | None] = mapped_column(String(10), nullable=True)
    to_state: Mapped[str] = mapped_column(String(10), nullable=False)
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    sm: Mapped[SecurityModule] = relationship(back_populates="events")
