"""Every refusal of the meter emulator, with a stable machine-readable reason.

MeterError          base; `.reason` (stable, snake_case), `.message` one line
├── StateError      no meter in the state folder, one already there, or a damaged state file
└── TokenRefused    the meter refuses a token (corrupt or foreign, replayed, too old, past
                    the key's expiry, credit under a default key); the meter is unchanged
"""

from __future__ import annotations


class MeterError(Exception):
    """Base of every refusal raised by `meter_emulator`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class StateError(MeterError):
    """The state folder does not hold a usable meter (or already holds one, for `init`)."""


class TokenRefused(MeterError):
    """A token the meter will not accept; nothing was applied."""
