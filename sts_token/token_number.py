"""The 20-digit token number: a 64-bit block with the 2-bit class spliced in at bits 28 and 27."""

from __future__ import annotations

from dataclasses import dataclass

from sts_token.errors import InvalidTokenNumber

_LIMIT = 1 << 66
_CLASS_BITS = (1 << 28) | (1 << 27)


@dataclass(frozen=True)
class Token:
    """A well-formed token number: exactly 20 decimal digits whose value is below 2**66."""

    digits: str

    def __post_init__(self) -> None:
        if not (self.digits.isascii() and self.digits.isdigit()) or len(self.digits) != 20:
            raise InvalidTokenNumber(
                f"a token is exactly 20 decimal digits, got {len(self.digits)} characters"
            )
        if int(self.digits) >= _LIMIT:
            raise InvalidTokenNumber("token value exceeds 66 bits: digits are corrupted")

    @classmethod
    def parse(cls, text: str) -> Token:
        """Accept the digits with optional spaces or dashes between groups."""
        return cls(text.replace(" ", "").replace("-", ""))

    @classmethod
    def from_block(cls, token_class: int, block: int) -> Token:
        """Splice ``token_class`` into the (encrypted) 64-bit block and render 20 digits (SPEC 3)."""
        displaced = (block & _CLASS_BITS) >> 27
        value = (displaced << 64) | (block & ~_CLASS_BITS) | (token_class << 27)
        return cls(f"{value:020d}")

    @property
    def token_class(self) -> int:
        """The 2-bit token class read from bits 28..27 of the token value."""
        return (int(self.digits) >> 27) & 3

    @property
    def block(self) -> int:
        """The 64-bit block with the displaced bits 28 and 27 restored from bits 65 and 64."""
        value = int(self.digits)
        return (value & ~_CLASS_BITS & ((1 << 64) - 1)) | ((value >> 64) << 27)

    def grouped(self) -> str:
        """Digits in five groups of four, as printed on receipts."""
        return " ".join(self.digits[i : i + 4] for i in range(0, 20, 4))

    def __str__(self) -> str:
        return self.digits
