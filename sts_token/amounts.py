"""The 16-bit amount encoding (2-bit exponent, 14-bit mantissa) and the amounts it carries."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

from sts_token.errors import InvalidAmount

_OFFSETS = (0, 16384, 180224, 1818624)
_SCALES = (1, 10, 100, 1000)
MAX_ENCODABLE = 16383 * 1000 + 1818624


def encode_amount(value: int) -> int:
    """Field for ``value``, rounding UP to the next representable value (SPEC 5.3)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ENCODABLE:
        raise InvalidAmount(f"amount must be an integer 0..{MAX_ENCODABLE}, got {value!r}")
    for exponent, (offset, scale) in enumerate(zip(_OFFSETS, _SCALES, strict=True)):
        mantissa = -((offset - value) // scale)
        if mantissa <= 16383:
            return (exponent << 14) | mantissa
    raise AssertionError("unreachable: value was range-checked")


def decode_amount(field: int) -> int:
    """The integer a 16-bit amount field represents."""
    exponent = field >> 14
    return (field & 0x3FFF) * _SCALES[exponent] + _OFFSETS[exponent]


def representable(value: int) -> int:
    """The value a token will actually carry for ``value`` (``value`` rounded up)."""
    return decode_amount(encode_amount(value))


@dataclass(frozen=True)
class TransferAmount:
    """A class 0 transfer amount in tenths of the natural unit (0.1 kWh for electricity)."""

    tenths: int

    def __post_init__(self) -> None:
        encode_amount(self.tenths)

    @classmethod
    def from_decimal(cls, amount: Decimal | str) -> TransferAmount:
        """Convert a natural-unit amount ("25.6" kWh -> 256 tenths).

        Digits finer than 0.1 follow the reference vending behaviour the vectors were made with:
        truncated for amounts of 1 or more, rounded up below 1 (so no non-zero amount becomes 0).
        """
        try:
            value = Decimal(amount)
        except InvalidOperation:
            raise InvalidAmount(f"amount must be a decimal number, got {amount!r}") from None
        if not value.is_finite() or value < 0:
            raise InvalidAmount(f"amount must be a non-negative decimal number, got {amount!r}")
        rounding = ROUND_FLOOR if value >= 1 else ROUND_CEILING
        tenths = int((value * 10).to_integral_value(rounding=rounding))
        if tenths > MAX_ENCODABLE:
            raise InvalidAmount(
                f"amount {amount} exceeds the maximum {Decimal(MAX_ENCODABLE) / 10}"
            )
        return cls(tenths)

    @property
    def field(self) -> int:
        """The encoded 16-bit field."""
        return encode_amount(self.tenths)

    @property
    def carried(self) -> Decimal:
        """The amount the token actually carries, in the natural unit (after rounding up)."""
        return Decimal(representable(self.tenths)) / 10
