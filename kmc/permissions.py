"""The roles of the KMC's people and machine clients, declared once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

ADMIN = "admin"
OPERATOR = "operator"
MANUFACTURER = "manufacturer"
AUDITOR = "auditor"
ROLES = (ADMIN, OPERATOR, MANUFACTURER, AUDITOR)


class Account(Protocol):
    username: str
    role: str
    id_man: str | None


@dataclass(frozen=True)
class Caller:
    """Who is acting: the audit name, the role, and for a manufacturer its ID_man."""

    name: str
    role: str
    id_man: str | None = None

    @classmethod
    def of(cls, user: Account) -> Caller:
        return cls(user.username, user.role, user.id_man)

    @property
    def is_manufacturer(self) -> bool:
        return self.role == MANUFACTURER
