"""Every table of the KMC, imported in one place so the metadata (and Alembic) sees them all."""

from kmc.accounts.models import ApiToken, User
from kmc.audit.models import AuditCheckpoint, AuditEntry
from sm_registry.models import Manufacturer, SecurityModule, SmStateEvent

__all__ = [
    "ApiToken",
    "AuditCheckpoint",
    "AuditEntry",
    "Manufacturer",
    "SecurityModule",
    "SmStateEvent",
    "User",
]
