"""Account, API-token and login-throttle tables."""

from __future__ import annotations

import secrets
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kmc.database import UTCDateTime, db


def new_session_nonce() -> str:
    return secrets.token_hex(16)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    role: Mapped[str] = mapped_column(String(20), nullable=False)
    id_man: Mapped[str | None] = mapped_column(
        String(4), ForeignKey("manufacturers.id_man"), nullable=True
    )
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    must_change_password: Mapped[bool] = mapped_column(default=False, nullable=False)
    active: Mapped[bool] = mapped_column(default=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # Part of the session identity: changing it (logout, password change, disable) ends every
    # session of this user, including copies of an old session cookie.
    session_nonce: Mapped[str] = mapped_column(
        String(32), nullable=False, default=new_session_nonce
    )

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user")

    @property
    def is_active(self) -> bool:  # Flask-Login: inactive accounts cannot log in
        return self.active

    def get_id(self) -> str:
        """Flask-Login's session identity: the user id and the current session nonce."""
        return f"{self.id}:{self.session_nonce}"

    def end_sessions(self) -> None:
        self.session_nonce = new_session_nonce()


class ApiToken(db.Model):
    """A bearer token for a machine client; only the SHA-256 of its secret part is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False)
    name: Mapped[str] = mapped_column(String(80), nullable=False)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(back_populates="tokens")


class LoginThrottle(db.Model):
    """Failed attempts counted for one account name or one client address (`scope`, `subject`),
    the wait they impose, and for an address the audit window being counted
    (kmc/accounts/throttle.py; docs/accounts.md)."""

    __tablename__ = "login_throttle"

    scope: Mapped[str] = mapped_column(String(16), primary_key=True)
    subject: Mapped[str] = mapped_column(String(120), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_failure_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    blocked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_failures: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    window_throttled: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    window_names: Mapped[str] = mapped_column(Text, nullable=False, default="[]")

    __table_args__ = (Index("ix_login_throttle_window_start", "window_start"),)
