"""The token CRC-16: reflected polynomial 0xA001, init 0xFFFF, over 7 bytes, result byte-swapped."""

from __future__ import annotations


def _build_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = (reg >> 1) ^ 0xA001 if reg & 1 else reg >> 1
        table.append(reg)
    return tuple(table)


_TABLE = _build_table()


def token_crc(crc_input: int) -> int:
    """CRC of the 50-bit ``class | subclass | payload`` value as placed in block bits 15..0.

    The value is serialised as 7 big-endian bytes and fed to the CRC-16/MODBUS register; the
    final register is byte-swapped (SPEC 4).
    """
    reg = 0xFFFF
    for shift in (48, 40, 32, 24, 16, 8, 0):
        reg = (reg >> 8) ^ _TABLE[(reg ^ (crc_input >> shift)) & 0xFF]
    return ((reg & 0xFF) << 8) | (reg >> 8)
