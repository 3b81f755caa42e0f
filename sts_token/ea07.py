"""EA07, the Standard Transfer Algorithm: 16 rounds of key-selected nibble substitution + bit permutation.

The substitution boxes and the permutation are licensed STS data and are not shipped: they are loaded
at run time from a JSON file (``--ea07-tables FILE`` or ``STS_EA07_TABLES``, see docs/tokens.md).
For speed each round is one lookup per byte in tables built once per tables file, each entry
being the permuted image of a substituted byte; the key only picks which table a byte uses.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from sts_token.errors import Ea07TablesInvalid, Ea07TablesMissing

ENV_VAR = "STS_EA07_TABLES"
_MASK64 = (1 << 64) - 1

# For one byte position: four 256-entry tables, indexed by the two selection bits of its nibbles.
_ByteTables = tuple[tuple[int, ...], ...]


def _is_permutation(values: Sequence[int], size: int) -> bool:
    return len(values) == size and sorted(values) == list(range(size))


def _inverse(values: Sequence[int]) -> tuple[int, ...]:
    result = [0] * len(values)
    for index, value in enumerate(values):
        result[value] = index
    return tuple(result)


def _substitute_byte(boxes: tuple[Sequence[int], Sequence[int]], selector: int, byte: int) -> int:
    low = boxes[selector & 1][byte & 0xF]
    high = boxes[selector >> 1][byte >> 4]
    return (high << 4) | low


def _permute(bit_targets: Sequence[int], value: int) -> int:
    out = 0
    bit = 0
    while value:
        if value & 1:
            out |= 1 << bit_targets[bit]
        value >>= 1
        bit += 1
    return out


class Ea07Tables:
    """A validated set of EA07 tables with the byte-wise round tables derived from them."""

    __slots__ = ("encrypt_rounds", "decrypt_first", "decrypt_middle", "decrypt_last")

    def __init__(self, s1: Sequence[int], s2: Sequence[int], p: Sequence[int]) -> None:
        if not (_is_permutation(s1, 16) and _is_permutation(s2, 16)):
            raise Ea07TablesInvalid("EA07 tables: S1 and S2 must each be a permutation of 0..15")
        if not _is_permutation(p, 64):
            raise Ea07TablesInvalid("EA07 tables: P must be a permutation of 0..63")
        boxes = (tuple(s1), tuple(s2))
        inverse_boxes = (_inverse(s1), _inverse(s2))
        p_inverse = _inverse(p)
        self.encrypt_rounds: tuple[_ByteTables, ...] = tuple(
            tuple(
                tuple(_permute(p, _substitute_byte(boxes, sel, v) << (8 * j)) for v in range(256))
                for sel in range(4)
            )
            for j in range(8)
        )
        self.decrypt_first: tuple[tuple[int, ...], ...] = tuple(
            tuple(_permute(p_inverse, v << (8 * j)) for v in range(256)) for j in range(8)
        )
        self.decrypt_middle: tuple[_ByteTables, ...] = tuple(
            tuple(
                tuple(
                    _permute(p_inverse, _substitute_byte(inverse_boxes, sel, v) << (8 * j))
                    for v in range(256)
                )
                for sel in range(4)
            )
            for j in range(8)
        )
        self.decrypt_last: tuple[_ByteTables, ...] = tuple(
            tuple(
                tuple(_substitute_byte(inverse_boxes, sel, v) << (8 * j) for v in range(256))
                for sel in range(4)
            )
            for j in range(8)
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Ea07Tables:
        """Build from the JSON object: S1, S2, P required; S1_inverse, S2_inverse, P_inverse checked."""
        tables: dict[str, list[int]] = {}
        for name in ("S1", "S2", "P", "S1_inverse", "S2_inverse", "P_inverse"):
            value = data.get(name)
            if value is None and name.endswith("_inverse"):
                continue
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            ):
                raise Ea07TablesInvalid(f"EA07 tables: {name} must be a list of integers")
            tables[name] = value
        result = cls(tables["S1"], tables["S2"], tables["P"])
        for name, base in (("S1_inverse", "S1"), ("S2_inverse", "S2"), ("P_inverse", "P")):
            if name in tables and tuple(tables[name]) != _inverse(tables[base]):
                raise Ea07TablesInvalid(f"EA07 tables: {name} is not the inverse of {base}")
        return result

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Ea07Tables:
        """Read and validate a tables file (cached per absolute path: a vend asks for the tables
        every time, and resolving symbolic links cost a tenth of an EA07 vend's CPU)."""
        return _load_cached(os.path.abspath(path))


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> Ea07Tables:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Ea07TablesMissing(f"EA07 tables file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Ea07TablesInvalid(f"EA07 tables file {path} is unreadable: {exc}") from None
    if not isinstance(data, dict):
        raise Ea07TablesInvalid(f"EA07 tables file {path} must hold a JSON object")
    return Ea07Tables.from_mapping(data)


def load_ea07_tables(path: str | os.PathLike[str] | None = None) -> Ea07Tables:
    """The EA07 tables from ``path``, else from ``$STS_EA07_TABLES``; Ea07TablesMissing if neither."""
    chosen = path if path is not None else os.environ.get(ENV_VAR) or None
    if chosen is None:
        raise Ea07TablesMissing(
            "EA07 needs the licensed EA07 tables: pass --ea07-tables FILE "
            f"or set {ENV_VAR} (DKGA04/EA11 works without them)"
        )
    return Ea07Tables.load(chosen)


def _selectors(key: int) -> list[bytes]:
    """Per round r, per byte j: the two nibble selection bits of round key rotl(K0, r).

    Bits 3 and 7 of every byte are gathered at once into bits 0 and 1 of that byte.
    """
    complemented = ~key & _MASK64
    register = ((complemented >> 12) | (complemented << 52)) & _MASK64
    rounds = []
    for _ in range(16):
        picked = ((register >> 3) & 0x0101010101010101) | ((register >> 6) & 0x0202020202020202)
        rounds.append(picked.to_bytes(8, "little"))
        register = ((register << 1) | (register >> 63)) & _MASK64
    return rounds


_Stage = tuple[tuple[int, ...], ...]


def _run(stages: tuple[_Stage, ...], block: int) -> int:
    """Apply byte-wise lookup stages: each output is the OR of one table entry per input byte."""
    for t0, t1, t2, t3, t4, t5, t6, t7 in stages:
        block = (
            t0[block & 0xFF]
            | t1[(block >> 8) & 0xFF]
            | t2[(block >> 16) & 0xFF]
            | t3[(block >> 24) & 0xFF]
            | t4[(block >> 32) & 0xFF]
            | t5[(block >> 40) & 0xFF]
            | t6[(block >> 48) & 0xFF]
            | t7[block >> 56]
        )
    return block


class Ea07Cipher:
    """EA07 bound to one 64-bit decoder key: 64-bit integer block in, 64-bit block out.

    Decryption is regrouped as P^-1, then (S_r^-1 followed by P^-1) for r = 15..1, then S_0^-1,
    so that it too is one byte-wise lookup stage per step.
    """

    __slots__ = ("_selectors", "_tables", "_encrypt", "_decrypt")

    def __init__(self, key: bytes, tables: Ea07Tables) -> None:
        self._selectors = _selectors(int.from_bytes(key, "big"))
        self._tables = tables
        self._encrypt: tuple[_Stage, ...] = tuple(
            tuple(t[s] for t, s in zip(tables.encrypt_rounds, sel, strict=True))
            for sel in self._selectors
        )
        # Built on first decryption: the vending side never decrypts.
        self._decrypt: tuple[_Stage, ...] | None = None

    def _decrypt_stages(self) -> tuple[_Stage, ...]:
        tables, selectors = self._tables, self._selectors
        middle = tuple(
            tuple(t[s] for t, s in zip(tables.decrypt_middle, sel, strict=True))
            for sel in reversed(selectors[1:])
        )
        last = tuple(t[s] for t, s in zip(tables.decrypt_last, selectors[0], strict=True))
        self._decrypt = (tables.decrypt_first, *middle, last)
        return self._decrypt

    def encrypt(self, block: int) -> int:
        """Encrypt one 64-bit block."""
        return _run(self._encrypt, block)

    def decrypt(self, block: int) -> int:
        """Decrypt one 64-bit block."""
        return _run(self._decrypt or self._decrypt_stages(), block)
