"""MISTY1 over many blocks at once (numpy), each block under its own key: the batch engine.

The scalar `sts_token.misty1` spends its time in the interpreter, one table lookup at a time;
here each step of a round is one array operation over every block of the batch, so the
interpreter's cost is paid per batch and not per block. A key per block costs nothing extra:
the key schedule runs over arrays of key words too (with the scalar cipher's FI tables and
subkey wiring), and a batch under one key passes its key once and lets numpy broadcast it.
The output is bit for bit the scalar cipher's (tests/test_sts_token_batch_engine.py).
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

from sts_token.errors import InvalidKey
from sts_token.misty1 import fi_tables, subkeys

Words = npt.NDArray[np.uint16]
Blocks = npt.NDArray[np.uint64]
_ZERO: Words = np.zeros(1, dtype=np.uint16)


@functools.cache
def _tables() -> tuple[Words, Words]:
    pre, post = fi_tables()
    return np.array(pre, dtype=np.uint16), np.array(post, dtype=np.uint16)


def _fi(x: Words, ko: Words, ki: Words) -> Words:
    pre, post = _tables()
    result: Words = post[pre[x ^ ko] ^ ki]
    return result


def _fo(left: Words, right: Words, sk: tuple[Words, ...]) -> tuple[Words, Words]:
    """FO of the 32-bit half (left, right) with subkeys (KO1, KI1, KO2, KI2, KO3, KI3, KO4)."""
    ko1, ki1, ko2, ki2, ko3, ki3, ko4 = sk
    t0 = _fi(left, ko1, ki1) ^ right
    t1 = _fi(right, ko2, ki2) ^ t0
    t0 = _fi(t0, ko3, ki3) ^ t1
    return t1 ^ ko4, t0


def _fl(left: Words, right: Words, kl: tuple[Words, Words]) -> tuple[Words, Words]:
    right = right ^ (left & kl[0])
    return left ^ (right | kl[1]), right


def key_words(keys: bytes) -> Words:
    """The 16-byte keys laid end to end in ``keys`` as an (n, 8) array of big-endian words."""
    if not keys or len(keys) % 16:
        raise InvalidKey(f"MISTY1 keys are 16 bytes each, got {len(keys)} bytes in all")
    return np.frombuffer(keys, dtype=">u2").astype(np.uint16).reshape(-1, 8)


def encrypt_blocks(keys: Words, blocks: Blocks) -> Blocks:
    """Encrypt ``blocks[i]`` under key row ``keys[i]`` (or every block under a single row)."""
    k = [keys[:, i] for i in range(8)]
    fo, fl = subkeys(k, [_fi(k[i], _ZERO, k[(i + 1) % 8]) for i in range(8)])
    a, b, c, d = (((blocks >> np.uint64(s)) & np.uint64(0xFFFF)).astype(np.uint16)
                  for s in (48, 32, 16, 0))  # fmt: skip
    for i in (0, 2, 4, 6):
        a, b = _fl(a, b, fl[i])
        c, d = _fl(c, d, fl[i + 1])
        high, low = _fo(a, b, fo[i])
        c, d = c ^ high, d ^ low
        high, low = _fo(c, d, fo[i + 1])
        a, b = a ^ high, b ^ low
    a, b = _fl(a, b, fl[8])
    c, d = _fl(c, d, fl[9])
    out = c.astype(np.uint64) << np.uint64(48)
    out |= d.astype(np.uint64) << np.uint64(32)
    out |= a.astype(np.uint64) << np.uint64(16)
    out |= b.astype(np.uint64)
    return out
