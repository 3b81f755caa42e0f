"""The 20-digit token number: a 64-bit block with the 2-bit class spliced in at bits 28 and 27."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sts_token.errors import InvalidTokenNumber

_LIMIT = 1 << 66
_CLASS_BITS = (1 << 28) | (1 << 27)
_TEN_DIGITS = 10**10
# 2**64 split at ten decimal digits, for rendering 66-bit values from 64-bit array arithmetic.
_HIGH_OF_2_64, _LOW_OF_2_64 = divmod(1 << 64, _TEN_DIGITS)


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

    @classmethod
    def many_from_blocks(
        cls, token_classes: npt.NDArray[np.uint64], blocks: npt.NDArray[np.uint64]
    ) -> list[Token]:
        """`from_block` over arrays (the batch engine): the 66-bit value is rendered as two
        ten-digit halves in 64-bit arithmetic, all digits of all tokens in one array."""
        displaced = (blocks & _CLASS_BITS) >> 27
        low = (blocks & ~np.uint64(_CLASS_BITS)) | (token_classes << 27)
        # value = displaced * 2**64 + low = high * 10**10 + rest, with rest < 10**10.
        rest = low % _TEN_DIGITS + displaced * _LOW_OF_2_64
        high = low // _TEN_DIGITS + displaced * _HIGH_OF_2_64 + rest // _TEN_DIGITS
        rest %= _TEN_DIGITS
        digits = np.empty((len(blocks), 20), dtype=np.uint8)
        for column in range(9, -1, -1):
            high, digits[:, column] = np.divmod(high, 10)
            rest, digits[:, column + 10] = np.divmod(rest, 10)
        text = (digits + ord("0")).tobytes().decode("ascii")
        return [cls(text[i : i + 20]) for i in range(0, len(text), 20)]

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
