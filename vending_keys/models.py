"""Key-store tables: supply groups, vending keys (sealed), authorisations and pending approvals."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kmc.database import UTCDateTime, db

KEY_STATES = ("active", "deactivated", "compromised")
APPROVAL_STATES = ("pending", "approved", "rejected")
# Widths of the free-text columns; the service refuses longer text before the database would.
NAME_LENGTH = 120
REASON_LENGTH = 500


class SupplyGroup(db.Model):
    """A supply group: the set of meters sharing vending keys, named by its 6-digit SGC."""

    __tablename__ = "supply_groups"

    sgc: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False)
    utility: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False, default="")
    cluster: Mapped[str] = mapped_column(String(NAME_LENGTH), nullable=False, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    created_by: Mapped[str] = mapped_column(String(120), nullable=False)

    keys: Mapped[list[VendingKey]] = relationship(
        back_populates="supply_group", order_by="(VendingKey.krn, VendingKey.kt)"
    )


class VendingKey(db.Model):
    """One vending key (SGC, KRN, KT) with its attributes; the key itself only sealed."""

    __tablename__ = "vending_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sgc: Mapped[str] = mapped_column(ForeignKey("supply_groups.sgc"), nullable=False)
    krn: Mapped[int] = mapped_column(Integer, nullable=False)
    kt: Mapped[int] = mapped_column(Integer, nullable=False)
    dkga: Mapped[str] = mapped_column(String(2), nullable=False)
    eas: Mapped[str] = mapped_column(String(20), nullable=False)  # sorted, comma-separated
    base_date: Mapped[int] = mapped_column(Integer, nullable=False)
    ken: Mapped[int] = mapped_column(Integer, nullable=False)
    act: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    exp: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    refresh_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # AES-GCM sealed by the key store with b"vk:<sgc>:<krn>:<kt>" as associated data.
    key_sealed: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    kcv: Mapped[str] = mapped_column(String(6), nullable=False)
    state: Mapped[str] = mapped_column(String(12), nullable=False, default="active")
    state_reason: Mapped[str] = mapped_column(String(REASON_LENGTH), nullable=False, default="")
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    proposed_by: Mapped[str] = mapped_column(String(120), nullable=False)
    approved_by: Mapped[str | None] = mapped_column(String(120), nullable=True)

    supply_group: Mapped[SupplyGroup] = relationship(back_populates="keys")
    authorisations: Mapped[list[Authorisation]] = relationship(
        back_populates="key", order_by="Authorisation.smid"
    )

    __table_args__ = (UniqueConstraint("sgc", "krn", "kt", name="uq_vending_keys_identity"),)


class Authorisation(db.Model):
    """The key owner's authorisation for one SM to receive and use one vending key."""

    __tablename__ = "key_authorisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("vending_keys.id"), nullable=False)
    smid: Mapped[str] = mapped_column(
        ForeignKey("security_modules.smid"), nullable=False, index=True
    )
    iut: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # A decimal amount as canonical text: exact on every backend (SQLite has no DECIMAL).
    clm: Mapped[str | None] = mapped_column(String(40), nullable=True)
    resource_limit: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    proposed_by: Mapped[str] = mapped_column(String(120), nullable=False)
    approved_by: Mapped[str | None] = mapped_column(String(120), nullable=True)

    key: Mapped[VendingKey] = relationship(back_populates="authorisations")

    __table_args__ = (UniqueConstraint("key_id", "smid", name="uq_key_authorisations_key_smid"),)


class Approval(db.Model):
    """A proposed key generation or authorisation waiting for a second person (live mode)."""

    __tablename__ = "approvals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    subject: Mapped[str] = mapped_column(String(200), nullable=False)
    payload: Mapped[str] = mapped_column(Text, nullable=False)  # canonical JSON, no secrets
    state: Mapped[str] = mapped_column(String(10), nullable=False, default="pending")
    proposed_by: Mapped[str] = mapped_column(String(120), nullable=False)
    proposed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    decided_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    outcome: Mapped[str] = mapped_column(String(REASON_LENGTH), nullable=False, default="")
