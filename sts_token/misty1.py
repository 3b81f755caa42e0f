"""MISTY1 (RFC 2994), the EA11 block cipher: 128-bit key, 64-bit block, 8 rounds.

FI is split into two key-independent halves around its single key XOR, each a 65536-entry table
built once on first use: ``FI(x, k) = _post[_pre[x] ^ k]``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TypeVar

from sts_token.errors import InvalidKey
from sts_token.misty1_tables import S7, S9


@functools.cache
def fi_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """FI's two key-independent halves: ``FI(x, k) = post[pre[x] ^ k]``."""
    pre = []
    for x in range(1 << 16):
        d9 = S9[x >> 7] ^ (x & 0x7F)
        d7 = (S7[x & 0x7F] ^ d9) & 0x7F
        pre.append((d7 << 9) | d9)
    post = tuple((y & 0xFE00) | (S9[y & 0x1FF] ^ (y >> 9)) for y in range(1 << 16))
    return tuple(pre), post


_Word = TypeVar("_Word")


def subkeys(
    k: Sequence[_Word], kp: Sequence[_Word]
) -> tuple[list[tuple[_Word, _Word, _Word, _Word, _Word, _Word, _Word]], list[tuple[_Word, _Word]]]:
    """The key schedule's wiring (RFC 2994, 2.3): from the key words ``K1..K8`` and
    ``K'i = FI(Ki, Ki+1)``, the FO subkeys of rounds 0..7 in the order they are used
    (KO1, KI1, KO2, KI2, KO3, KI3, KO4) and the FL subkeys (KL1, KL2) of FL 0..9. The words are
    ints here and arrays of many keys' words in `sts_token.misty1_batch`."""
    fo = [
        (k[r], kp[(r + 5) % 8], k[(r + 2) % 8], kp[(r + 1) % 8], k[(r + 7) % 8],
         kp[(r + 3) % 8], k[(r + 4) % 8])
        for r in range(8)
    ]  # fmt: skip
    fl = [
        (k[j // 2], kp[(j // 2 + 6) % 8])
        if j % 2 == 0
        else (kp[((j - 1) // 2 + 2) % 8], k[((j - 1) // 2 + 4) % 8])
        for j in range(10)
    ]
    return fo, fl


class Misty1:
    """MISTY1 bound to one 16-byte key; blocks are 64-bit integers (big-endian byte order).

    The rounds work on the block's four 16-bit words in local variables (FL and FO never pack
    or split 32-bit halves), with each round's subkeys in one flat tuple in the order they are
    used: one call per block, no per-block objects.
    """

    __slots__ = ("_tables", "_encrypt_rounds", "_encrypt_last", "_decrypt_rounds", "_decrypt_first")

    def __init__(self, key: bytes) -> None:
        if len(key) != 16:
            raise InvalidKey(f"MISTY1 needs a 16-byte key, got {len(key)} bytes")
        self._tables = pre, post = fi_tables()
        k = [int.from_bytes(key[2 * i : 2 * i + 2], "big") for i in range(8)]
        fo, fl = subkeys(k, [post[pre[k[i]] ^ k[(i + 1) % 8]] for i in range(8)])
        # Encryption round pair i (i = 0, 2, 4, 6): FL i, FL i+1, FO i, FO i+1.
        self._encrypt_rounds = tuple((*fl[i], *fl[i + 1], *fo[i], *fo[i + 1]) for i in (0, 2, 4, 6))
        self._encrypt_last = (*fl[8], *fl[9])
        # Decryption round pair i (i = 6, 4, 2, 0): FO i+1, FO i, FL⁻¹ i, FL⁻¹ i+1.
        self._decrypt_first = (*fl[8], *fl[9])
        self._decrypt_rounds = tuple((*fo[i + 1], *fo[i], *fl[i], *fl[i + 1]) for i in (6, 4, 2, 0))

    def encrypt(self, block: int) -> int:
        """Encrypt one 64-bit block."""
        pre, post = self._tables
        # D0 = (a, b), D1 = (c, d), high word first.
        a, b, c, d = block >> 48, (block >> 32) & 0xFFFF, (block >> 16) & 0xFFFF, block & 0xFFFF
        for (fa0, fb0, fa1, fb1, k0, p0, k1, p1, k2, p2, k3,
             m0, q0, m1, q1, m2, q2, m3) in self._encrypt_rounds:  # fmt: skip
            b ^= a & fa0  # D0 = FL(D0)
            a ^= b | fb0
            d ^= c & fa1  # D1 = FL(D1)
            c ^= d | fb1
            t0 = post[pre[a ^ k0] ^ p0] ^ b  # D1 ^= FO(D0)
            t1 = post[pre[b ^ k1] ^ p1] ^ t0
            t0 = post[pre[t0 ^ k2] ^ p2] ^ t1
            c ^= t1 ^ k3
            d ^= t0
            t0 = post[pre[c ^ m0] ^ q0] ^ d  # D0 ^= FO(D1)
            t1 = post[pre[d ^ m1] ^ q1] ^ t0
            t0 = post[pre[t0 ^ m2] ^ q2] ^ t1
            a ^= t1 ^ m3
            b ^= t0
        fa8, fb8, fa9, fb9 = self._encrypt_last
        b ^= a & fa8
        a ^= b | fb8
        d ^= c & fa9
        c ^= d | fb9
        return (c << 48) | (d << 32) | (a << 16) | b

    def decrypt(self, block: int) -> int:
        """Decrypt one 64-bit block."""
        pre, post = self._tables
        # D1 = (c, d) is the high half of a ciphertext, D0 = (a, b) the low half.
        c, d, a, b = block >> 48, (block >> 32) & 0xFFFF, (block >> 16) & 0xFFFF, block & 0xFFFF
        fa8, fb8, fa9, fb9 = self._decrypt_first
        a ^= b | fb8  # D0 = FL⁻¹(D0)
        b ^= a & fa8
        c ^= d | fb9  # D1 = FL⁻¹(D1)
        d ^= c & fa9
        for (m0, q0, m1, q1, m2, q2, m3, k0, p0, k1, p1, k2, p2, k3,
             fa0, fb0, fa1, fb1) in self._decrypt_rounds:  # fmt: skip
            t0 = post[pre[c ^ m0] ^ q0] ^ d  # D0 ^= FO(D1)
            t1 = post[pre[d ^ m1] ^ q1] ^ t0
            t0 = post[pre[t0 ^ m2] ^ q2] ^ t1
            a ^= t1 ^ m3
            b ^= t0
            t0 = post[pre[a ^ k0] ^ p0] ^ b  # D1 ^= FO(D0)
            t1 = post[pre[b ^ k1] ^ p1] ^ t0
            t0 = post[pre[t0 ^ k2] ^ p2] ^ t1
            c ^= t1 ^ k3
            d ^= t0
            a ^= b | fb0  # D0 = FL⁻¹(D0)
            b ^= a & fa0
            c ^= d | fb1  # D1 = FL⁻¹(D1)
            d ^= c & fa1
        return (a << 48) | (b << 32) | (c << 16) | d
