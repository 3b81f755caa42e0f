"""Token classes and subclasses, named as the CLI and the emulators name them."""

from __future__ import annotations

import enum


class TokenClass(enum.IntEnum):
    """The 2-bit token class (3 is reserved and refused)."""

    CREDIT = 0
    METER_TEST = 1
    MANAGEMENT = 2


class CreditSubclass(enum.IntEnum):
    """Class 0 subclasses; all share one layout, units are an application matter."""

    ELECTRICITY = 0
    WATER = 1
    GAS = 2
    TIME = 3
    CURRENCY = 4

    @property
    def cli_name(self) -> str:
        """Lowercase name used on the command line and in JSON."""
        return self.name.lower()


ALL_REGISTERS = 0xFFFF  # clear-credit's field when no register is named


class ManagementKind(enum.IntEnum):
    """Class 2 subclasses that carry RND, TID and a 16-bit value field."""

    SET_MAX_POWER_LIMIT = 0
    CLEAR_CREDIT = 1
    SET_TARIFF_RATE = 2
    CLEAR_TAMPER = 5
    SET_MAX_PHASE_POWER_UNBALANCE = 6
    SET_WATER_METER_FACTOR = 7

    @property
    def cli_name(self) -> str:
        """Hyphenated name used on the command line and in JSON."""
        return self.name.lower().replace("_", "-")

    @property
    def takes(self) -> str | None:
        """What a caller gives for the 16-bit field: a register number ("register", clear-credit,
        every register by default), nothing (None, clear-tamper: the field is 0) or a "value"."""
        if self is ManagementKind.CLEAR_CREDIT:
            return "register"
        if self is ManagementKind.CLEAR_TAMPER:
            return None
        return "value"

    @property
    def amount_encoded(self) -> bool:
        """Power limits are watts in the 16-bit amount encoding; the others are raw 16 bits."""
        return self in (
            ManagementKind.SET_MAX_POWER_LIMIT,
            ManagementKind.SET_MAX_PHASE_POWER_UNBALANCE,
        )


class KeyChangeSubclass(enum.IntEnum):
    """Class 2 subclasses of the key change set sections, in section order."""

    FIRST = 3
    SECOND = 4
    THIRD = 8
    FOURTH = 9


class MeterTestSubclass(enum.IntEnum):
    """Class 1 subclasses: the manufacturer code width decides which one is used."""

    DISPLAY_1 = 0
    DISPLAY_2 = 1

    @property
    def code_digits(self) -> int:
        """2-digit manufacturer code in subclass 0, 4-digit in subclass 1."""
        return 2 if self is MeterTestSubclass.DISPLAY_1 else 4

    @property
    def control_bits(self) -> int:
        """36 control bits in subclass 0, 28 in subclass 1."""
        return 36 if self is MeterTestSubclass.DISPLAY_1 else 28
