"""Every table of the KMC, imported in one place so the metadata (and Alembic) sees them all."""

from key_load.models import IssuedKey, KeyLoadIssue
from kmc.accounts.models import ApiToken, User
from kmc.audit.models import AuditCheckpoint, AuditEntry
from sm_registry.models import Manufacturer, SecurityModule, SmStateEvent
from vending_keys.models import Approval, Authorisation, SupplyGroup, VendingKey

__all__ = [
    "ApiToken",
    "Approval",
    "AuditCheckpoint",
    "AuditEntry",
    "Authorisation",
    "IssuedKey",
    "KeyLoadIssue",
    "Manufacturer",
    "SecurityModule",
    "SmStateEvent",
    "SupplyGroup",
    "User",
    "VendingKey",
]
