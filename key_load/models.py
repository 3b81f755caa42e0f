"""Issuance records: which EKLF went to which SM, answering which request, carrying which keys."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kmc.database import UTCDateTime, db

if TYPE_CHECKING:
    from vending_keys.models import VendingKey


class KeyLoadIssue(db.Model):
    """One EKLF issued to one SM.

    The unique constraints are the replay and race guard: a nonce answers at most one EKLF per SM,
    and an SM's sequence numbers never repeat, even with several KMC processes on PostgreSQL.
    """

    __tablename__ = "key_load_issues"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    smid: Mapped[str] = mapped_column(ForeignKey("security_modules.smid"), nullable=False)
    sequence: Mapped[int] = mapped_column(BigInteger, nullable=False)
    nonce_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    request_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    file_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # The EKLF itself (enveloped to the SM, so only the SM can read the keys), for re-download.
    file_der: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    request_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    issued_by: Mapped[str] = mapped_column(String(120), nullable=False)

    keys: Mapped[list[IssuedKey]] = relationship(
        back_populates="issue", order_by="IssuedKey.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("smid", "nonce_sha256", name="uq_key_load_issues_smid_nonce"),
        UniqueConstraint("smid", "sequence", name="uq_key_load_issues_smid_sequence"),
    )


class IssuedKey(db.Model):
    """One vending key inside one EKLF, with the limits it was issued under."""

    __tablename__ = "issued_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issue_id: Mapped[int] = mapped_column(
        ForeignKey("key_load_issues.id"), nullable=False, index=True
    )
    key_id: Mapped[int] = mapped_column(ForeignKey("vending_keys.id"), nullable=False, index=True)
    kcv: Mapped[str] = mapped_column(String(6), nullable=False)
    iut: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    issue: Mapped[KeyLoadIssue] = relationship(back_populates="keys")
    key: Mapped[VendingKey] = relationship("VendingKey")

    __table_args__ = (UniqueConstraint("issue_id", "key_id", name="uq_issued_keys_issue_key"),)
