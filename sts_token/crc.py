"""The token CRC-16: reflected polynomial 0xA001, init 0xFFFF, over 7 bytes, result byte-swapped."""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt


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


@functools.cache
def _array_table() -> npt.NDArray[np.uint64]:
    return np.array(_TABLE, dtype=np.uint64)


def token_crc_array(crc_inputs: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """`token_crc` of every 50-bit value in an array, in one pass per byte (the batch engine)."""
    table = _array_table()
    eight, low_byte = np.uint64(8), np.uint64(0xFF)
    reg = np.full(crc_inputs.shape, 0xFFFF, dtype=np.uint64)
    for shift in (48, 40, 32, 24, 16, 8, 0):
        reg = (reg >> eight) ^ table[(reg ^ (crc_inputs >> np.uint64(shift))) & low_byte]
    return ((reg & low_byte) << eight) | (reg >> eight)
