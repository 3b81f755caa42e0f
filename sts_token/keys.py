"""Key material and key identity: vending keys, decoder keys and the parameters that name a key.

Key bytes never appear in ``repr``/``str`` so a logged object cannot leak them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sts_token.errors import InvalidKey, UnsupportedOperation
from sts_token.identifiers import (
    BaseDate,
    DecoderKeyAlgorithm,
    EncryptionAlgorithm,
    KeyExpiryNumber,
    KeyRevisionNumber,
    KeyType,
    SupplyGroupCode,
    TariffIndex,
)


def _bytes_from_hex(text: str, what: str) -> bytes:
    cleaned = text.strip().removeprefix("0x").removeprefix("0X")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise InvalidKey(f"{what} must be hexadecimal") from None


@dataclass(frozen=True)
class VendingKey:
    """Secret vending key: 8 bytes for DKGA02, 20 bytes for DKGA04."""

    value: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.value) not in (8, 20):
            raise InvalidKey(
                f"vending key must be 8 bytes (DKGA02) or 20 bytes (DKGA04), got {len(self.value)}"
            )

    @classmethod
    def from_hex(cls, text: str) -> VendingKey:
        """Parse a hex vending key (16 or 40 hex digits)."""
        return cls(_bytes_from_hex(text, "vending key"))


@dataclass(frozen=True)
class DecoderKey:
    """A meter's decoder key in canonical byte order, tied to the algorithm it encrypts with."""

    value: bytes = field(repr=False)
    ea: EncryptionAlgorithm

    def __post_init__(self) -> None:
        if len(self.value) != self.ea.key_bytes:
            raise InvalidKey(
                f"an EA{self.ea.value} decoder key is {self.ea.key_bytes} bytes, "
                f"got {len(self.value)}"
            )

    @classmethod
    def from_hex(cls, text: str, ea: EncryptionAlgorithm | None = None) -> DecoderKey:
        """Parse a hex decoder key; without ``ea`` the length decides (8 bytes EA07, 16 EA11)."""
        value = _bytes_from_hex(text, "decoder key")
        if ea is None:
            by_length = {alg.key_bytes: alg for alg in EncryptionAlgorithm}
            if len(value) not in by_length:
                raise InvalidKey(f"decoder key must be 8 or 16 bytes, got {len(value)}")
            ea = by_length[len(value)]
        return cls(value, ea)

    def hex(self) -> str:
        """The key as lowercase hex; a deliberate, visibly named way to export the secret."""
        return self.value.hex()


@dataclass(frozen=True)
class KeyParameters:
    """Everything that names one meter key besides the vending key and the PAN."""

    dkga: DecoderKeyAlgorithm
    ea: EncryptionAlgorithm
    sgc: SupplyGroupCode
    tariff_index: TariffIndex
    krn: KeyRevisionNumber
    key_type: KeyType
    base_date: BaseDate
    ken: KeyExpiryNumber = KeyExpiryNumber(255)

    @classmethod
    def from_values(
        cls,
        *,
        dkga: str,
        ea: str,
        sgc: str,
        ti: str | int,
        krn: int,
        kt: int,
        base_date: int,
        ken: int = 255,
    ) -> KeyParameters:
        """Build from plain values, as typed on a command line or kept in a register."""
        return cls(
            dkga=DecoderKeyAlgorithm.parse(dkga),
            ea=EncryptionAlgorithm.parse(ea),
            sgc=SupplyGroupCode(sgc),
            tariff_index=TariffIndex.parse(str(ti)),
            krn=KeyRevisionNumber(krn),
            key_type=KeyType(kt),
            base_date=BaseDate(base_date),
            ken=KeyExpiryNumber(ken),
        )

    def __post_init__(self) -> None:
        if self.dkga is DecoderKeyAlgorithm.DKGA02 and self.ea is not EncryptionAlgorithm.EA07:
            raise UnsupportedOperation("DKGA02 yields a 64-bit key and is used only with EA07")
