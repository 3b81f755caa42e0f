"""The KMC's error tree; every refusal a user can see is one of these.

    KMCError                      base: a stable machine-readable `reason` and a safe message
    ├── InvalidInput              400: malformed or out-of-range input
    ├── NotAuthenticated          401
    ├── Forbidden                 403: the actor's role or binding does not allow it
    ├── NotFound                  404
    ├── Conflict                  409: duplicates, wrong state, replays
    ├── UnsupportedMediaType      415: a body sent as a media type the endpoint does not take
    ├── PolicyRefusal             422: well-formed but refused by a KMC rule (live-mode policy...)
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

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"error": self.reason, "message": self.message}


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
    or lacks a mechanism); nothing was written. Reasons `sealed`, `hsm_unavailable`,
    `hsm_mechanism_missing`."""

    http_status = 503
