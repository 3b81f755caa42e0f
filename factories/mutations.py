"""Hypothesis strategies that break valid input the way an attacker or a bad link would: bit
flips, byte edits, truncations, inserted and trailing bytes, and for DER the structure itself
(a TLV's length octets rewritten, BER long or indefinite lengths, the constructed bit set, a
value cut out). Used by the fuzz tests of every parser on the trust boundary."""

from __future__ import annotations

from hypothesis import strategies as st

# Length octets that are wrong in a way DER forbids or that point past the data.
_BAD_LENGTHS = (b"\x80", b"\x81\x01", b"\x82\x00\x05", b"\x84\xff\xff\xff\xff", b"\xff", b"\x00")


def _tlvs(data: bytes) -> list[tuple[int, int, int, int]]:
    """(identifier offset, length offset, contents offset, end) of every TLV in DER `data`."""
    found, pending = [], [(0, len(data))]
    while pending:
        offset, end = pending.pop()
        while offset + 2 <= end:
            identifier, length_at = offset, offset + 1
            first = data[length_at]
            count = first & 0x7F if first & 0x80 else 0
            size = int.from_bytes(data[length_at + 1 : length_at + 1 + count], "big")
            contents = length_at + 1 + count
            size = size if count else first
            if contents + size > end:
                break
            found.append((identifier, length_at, contents, contents + size))
            if data[identifier] & 0x20:
                pending.append((contents, contents + size))
            offset = contents + size
    return found


def _long_form(size: int, extra: int) -> bytes:
    """`size` in the long form with `extra` needless leading zero octets (BER, not DER)."""
    octets = b"\x00" * extra + size.to_bytes(max(1, (size.bit_length() + 7) // 8), "big")
    return bytes((0x80 | len(octets),)) + octets


def der_edits(data: bytes) -> st.SearchStrategy[bytes]:
    """Structure-aware edits of the DER `data`: each TLV's length rewritten (too long, too short,
    indefinite, in a needless long form), its constructed bit flipped, or the TLV cut out."""
    tlvs = _tlvs(data)

    def edit(choice: tuple[int, int, int]) -> bytes:
        index, kind, value = choice
        identifier, length_at, contents, end = tlvs[index % len(tlvs)]
        head, body, tail = data[:length_at], data[contents:end], data[end:]
        if kind == 0:
            return head + _BAD_LENGTHS[value % len(_BAD_LENGTHS)] + body + tail
        if kind == 1:
            return head + _long_form(len(body), 1 + value % 2) + body + tail
        if kind == 2:
            return head + bytes(((len(body) + value % 5 - 2) % 128,)) + body + tail
        if kind == 3:
            flipped = bytes((data[identifier] ^ 0x20,))
            return data[:identifier] + flipped + data[identifier + 1 :]
        return data[:identifier] + tail

    return st.tuples(st.integers(0, len(tlvs) - 1), st.integers(0, 4), st.integers(0, 255)).map(
        edit
    )


def byte_edits(data: bytes) -> st.SearchStrategy[bytes]:
    """Format-blind edits of `data`: bit flips, byte overwrites, truncations, inserted or
    trailing bytes."""

    def overwrite(edits: list[tuple[int, int]]) -> bytes:
        mutated = bytearray(data)
        for position, value in edits:
            mutated[position % len(mutated)] = value
        return bytes(mutated)

    def flip(bits: list[int]) -> bytes:
        mutated = bytearray(data)
        for bit in bits:
            mutated[(bit // 8) % len(mutated)] ^= 1 << (bit % 8)
        return bytes(mutated)

    position = st.integers(0, len(data))
    return st.one_of(
        st.lists(st.integers(0, 8 * len(data) - 1), min_size=1, max_size=3).map(flip),
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), min_size=1).map(
            overwrite
        ),
        position.map(lambda n: data[:n]),
        st.tuples(position, st.binary(min_size=1, max_size=8)).map(
            lambda cut: data[: cut[0]] + cut[1] + data[cut[0] :]
        ),
        st.binary(min_size=1, max_size=8).map(lambda extra: data + extra),
    )


def mutations(data: bytes, *, der: bool = True) -> st.SearchStrategy[bytes]:
    """Edits of the valid `data` (structure-aware ones too when it is DER), or random bytes;
    never `data` itself."""
    edited = byte_edits(data) | der_edits(data) if der else byte_edits(data)
    return (edited | st.binary(max_size=2 * len(data))).filter(lambda mutated: mutated != data)
