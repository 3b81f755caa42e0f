"""Every refusal of the SM emulator, as exceptions with a stable machine-readable reason.

    SmError                 base; `.reason` (stable, snake_case), `str(exc)` a one-line explanation
    ├── StateError          the state folder is missing, already initialised, or lacks a step
    │                       (no pinned root, no certificate yet)
    ├── InvalidRequest      a command-line value is out of range (SGC, KRN, amount, ...)
    ├── CertificateRefused  the certificate to install does not chain to the pinned root or
    │                       does not certify this SM's key and SMID
    ├── LoadRefused         an EKLF is refused (signature, chain, recipient, SMID, nonce,
    │                       expired request, issue time, sequence, replay, full registers);
    │                       nothing in the state changed
    ├── VendRefused         a token may not be issued (key unknown, not yet active, past IUT,
    │                       CLM or resource limit, KEN, default key type, no free TID);
    │                       nothing in the state changed
    └── StateUnavailable    the state database could not be written (disk full, I/O error,
                            locked past the timeout): the transaction rolled back, nothing
                            issued or changed; not the request's fault (the API's 503)

Messages never carry key material or nonces.
"""

from __future__ import annotations


class SmError(Exception):
    """Base of every refusal raised by `sm_emulator`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StateError(SmError):
    """The state folder is not in the state the command needs."""


class InvalidRequest(SmError):
    """A value given to a command is malformed or out of range."""


class CertificateRefused(SmError):
    """The KMC root or SM certificate offered cannot be trusted or installed."""


class LoadRefused(SmError):
    """An Enhanced Key Load File was refused; the state is unchanged."""


class VendRefused(SmError):
    """A token was not issued; counters and the TID store are unchanged."""


class StateUnavailable(SmError):
    """The state database failed under a write; its transaction was rolled back."""

    def __init__(self, cause: str) -> None:
        super().__init__(
            "state_unavailable",
            f"the SM's state could not be written ({cause}); nothing was issued or changed",
        )
        self.cause = cause

    def __reduce__(self) -> tuple[type[StateUnavailable], tuple[str]]:
        return StateUnavailable, (self.cause,)  # raised again in a batch's parent process
