"""Callers of service functions as the test fixtures name them (tests/conftest.py ACCOUNTS)."""

from __future__ import annotations

from kmc.permissions import ADMIN, AUDITOR, MANUFACTURER, OPERATOR, Caller

# The fixture accounts' names start with their role; a manufacturer's carry its ID_man.
_PREFIXES = {"admin": ADMIN, "operator": OPERATOR, "maker": MANUFACTURER, "auditor": AUDITOR}
_MAKERS = {"maker1": "1A2B", "maker2": "3C4D"}


def caller(name: str) -> Caller:
    """The caller named `name`: a fixture account's role by its name, or (for system names such
    as "test", "bench" or "cli:...") an admin, as the CLI's shell user is."""
    for prefix, role in _PREFIXES.items():
        if name.startswith(prefix):
            return Caller(name, role, _MAKERS.get(name))
    return Caller(name, ADMIN)
