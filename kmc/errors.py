"""The KMC's error tree; every refusal a user can see is one of these.

    KMCError                      base: a stable machine-readable `reason` and a safe message
    ├── InvalidInput              400: malformed or out-of-range input
    ├── NotAuthenticated          401
    ├── Forbidden                 403: the actor's role or binding does not allow it
    ├── NotFound                  404
    ├── Conflict                  409: duplicates, wrong state, replays
    ├── UnsupportedMediaType      415: a body sent as a media type the endpoint does not take
    ├── PolicyRefusal             422: well-formed but refused by a KMC rule (live-mode policy...)
    ├── TooManyAttempts           429: wait after failed logins or bad tokens (`retry_after`)
    └── Unavailable               503: not now: the key store is sealed, or the HSM is missing, locked or lacks a mechanism

Messages never carry key material. Each interface maps these in exactly one place: the JSON API
(`kmc.api`), the web UI (`kmc.web`) and the CLI (`kmc.cli`). An identifier refused by the shared
types (`key_load_protocol.identifiers`: SMID, ID_man, SGC, KRN, KT, KEN) becomes `InvalidInput`
with the identifier's stable code only in `identifier_input`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from key_load_protocol.identifiers import InvalidIdentifier


class KMCError(Exception):
    http_status = 400

    def __init__(self, reason: str, message: str, **details: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        # Machine-readable facts the caller acts on (e.g. `sequence` of a replayed VKLOADREQ's
        # EKLF); each one is declared in the API's Error schema (kmc/api/openapi.py).
        self.details = details

    def as_dict(self) -> dict[str, str | int]:
        return {"error": self.reason, "message": self.message, **self.details}


class InvalidInput(KMCError):
    http_status = 400


class NotAuthenticated(KMCError):
    http_status = 401


class Forbidden(KMCError):
    http_status = 403


class NotFound(KMCError):
    http_status = 404


class Conflict(KMCError):
    http_status = 409


class UnsupportedMediaType(KMCError):
    http_status = 415


class PolicyRefusal(KMCError):
    http_status = 422


class TooManyAttempts(KMCError):
    """429: too many failed attempts for this account or from this address; the caller waits
    `retry_after` seconds (sent as `Retry-After`), whatever it sends meanwhile."""

    http_status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            "throttled", f"Too many failed attempts; try again in {retry_after} seconds"
        )
        self.retry_after = retry_after


class KeyStoreError(Exception):
    """A sealed value does not open (wrong key, wrong identity or tampered); carries no secret.

    Not a KMCError: it is a fault of the instance, never of the caller's input."""


@contextmanager
def identifier_input() -> Iterator[None]:
    """Use around code that builds identifiers from input (also as a decorator): a refused
    identifier becomes `InvalidInput(code, message)`, e.g. `invalid_smid`."""
    try:
        yield
    except InvalidIdentifier as error:
        raise InvalidInput(error.code, str(error)) from None


class Unavailable(KMCError):
    """503: the KMC cannot do this now (its key store is sealed, or the HSM is missing, locked
    or lacks a mechanism); nothing was written but, for an HSM fault, its audit entry. Reasons
    `REASONS` (the API document lists them; the CLI's `server_unreachable` never reaches it)."""

    http_status = 503
    REASONS = ("sealed", "hsm_unavailable", "hsm_mechanism_missing")
