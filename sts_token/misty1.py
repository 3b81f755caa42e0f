"""MISTY1 (RFC 2994), the EA11 block cipher: 128-bit key, 64-bit block, 8 rounds.

FI is split into two key-independent halves around its single key XOR, each a 65536-entry table
built once on first use: ``FI(x, k) = _post[_pre[x] ^ k]``.
"""

from __future__ import annotations

import functools

from sts_token.errors import InvalidKey
from sts_token.misty1_tables import S7, S9


@functools.cache
def _fi_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    pre = []
    for x in range(1 << 16):
        d9 = S9[x >> 7] ^ (x & 0x7F)
        d7 = (S7[x & 0x7F] ^ d9) & 0x7F
        pre.append((d7 << 9) | d9)
    post = tuple((y & 0xFE00) | (S9[y & 0x1FF] ^ (y >> 9)) for y in range(1 << 16))
    return tuple(pre), post


class Misty1:
    """MISTY1 bound to one 16-byte key; blocks are 64-bit integers (big-endian byte order)."""

    __slots__ = ("_fo", "_fl", "_pre", "_post")

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise InvalidKey(f"MISTY1 needs a 16-byte key, got {len(key)} bytes")
        self._pre, self._post = _fi_tables()
        k = [int.from_bytes(key[2 * i : 2 * i + 2], "big") for i in range(8)]
        kp = [self._fi(k[i], k[(i + 1) % 8]) for i in range(8)]
        # FO subkeys for rounds 0..7, in the order they are used.
        self._fo = tuple(
            (k[r], kp[(r + 5) % 8], k[(r + 2) % 8], kp[(r + 1) % 8], k[(r + 7) % 8],
             kp[(r + 3) % 8], k[(r + 4) % 8])
            for r in range(8)
        )  # fmt: skip
        # FL subkeys (a, b) for j = 0..9.
        self._fl = tuple(
            (k[j // 2], kp[(j // 2 + 6) % 8])
            if j % 2 == 0
            else (kp[((j - 1) // 2 + 2) % 8], k[((j - 1) // 2 + 4) % 8])
            for j in range(10)
        )

    def _fi(self, x: int, k: int) -> int:
        return self._post[self._pre[x] ^ k]

    def _fo_apply(self, x: int, r: int) -> int:
        pre, post = self._pre, self._post
        k0, kp0, k1, kp1, k2, kp2, k3 = self._fo[r]
        t0 = x >> 16
        t1 = x & 0xFFFF
        t0 = post[pre[t0 ^ k0] ^ kp0] ^ t1
        t1 = post[pre[t1 ^ k1] ^ kp1] ^ t0
        t0 = post[pre[t0 ^ k2] ^ kp2] ^ t1
        return ((t1 ^ k3) << 16) | t0

    def _fl_apply(self, x: int, j: int) -> int:
        a, b = self._fl[j]
        d0 = x >> 16
        d1 = (x & 0xFFFF) ^ (d0 & a)
        return ((d0 ^ (d1 | b)) << 16) | d1

    def _fl_inverse(self, x: int, j: int) -> int:
        a, b = self._fl[j]
        d1 = x & 0xFFFF
        d0 = (x >> 16) ^ (d1 | b)
        return (d0 << 16) | (d1 ^ (d0 & a))

    def encrypt(self, block: int) -> int:
        """Encrypt one 64-bit block."""
        d0 = block >> 32
        d1 = block & 0xFFFFFFFF
        for i in (0, 2, 4, 6):
            d0 = self._fl_apply(d0, i)
            d1 = self._fl_apply(d1, i + 1)
            d1 ^= self._fo_apply(d0, i)
            d0 ^= self._fo_apply(d1, i + 1)
        return (self._fl_apply(d1, 9) << 32) | self._fl_apply(d0, 8)

    def decrypt(self, block: int) -> int:
        """Decrypt one 64-bit block."""
        d1 = block >> 32
        d0 = block & 0xFFFFFFFF
        d0 = self._fl_inverse(d0, 8)
        d1 = self._fl_inverse(d1, 9)
        for i in (6, 4, 2, 0):
            d0 ^= self._fo_apply(d1, i + 1)
            d1 ^= self._fo_apply(d0, i)
            d0 = self._fl_inverse(d0, i)
            d1 = self._fl_inverse(d1, i + 1)
        return (d0 << 32) | d1
