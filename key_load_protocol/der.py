"""DER (X.690) encoding of the few ASN.1 types the protocol writes, straight to bytes.

Messages are parsed with the asn1crypto classes of `schema` and `asn1crypto.cms`, but built here:
asn1crypto re-serialises every child at every level while a structure is assembled, which cost
more than all the cryptography of an EKLF together. Each function returns one complete TLV, so
an encoder nests calls exactly as the ASN.1 definition nests types. The output is byte-for-byte
what asn1crypto makes of the same value (checked in tests/test_protocol_der.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from functools import lru_cache

NULL = b"\x05\x00"


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes((size,))
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(octets),)) + octets


def tlv(tag: int, contents: bytes) -> bytes:
    """One TLV with a single-octet identifier (universal, or context-specific tags 0 to 30)."""
    return bytes((tag,)) + _length(len(contents)) + contents


def sequence(*members: bytes) -> bytes:
    """SEQUENCE of already-encoded members, in order (absent optional members are just left out)."""
    return tlv(0x30, b"".join(members))


def set_of(members: Iterable[bytes]) -> bytes:
    """SET OF: X.690 11.6 puts the members' encodings in ascending order."""
    return tlv(0x31, b"".join(sorted(members)))


def explicit(number: int, encoded: bytes) -> bytes:
    """[number] EXPLICIT around one complete TLV."""
    return tlv(0xA0 | number, encoded)


def implicit(number: int, encoded: bytes) -> bytes:
    """[number] IMPLICIT: the TLV's identifier replaced by the context tag, constructed bit kept."""
    return bytes(((encoded[0] & 0x20) | 0x80 | number,)) + encoded[1:]


def integer(value: int) -> bytes:
    """INTEGER in the fewest two's-complement octets (for -128 that is one: 0x80)."""
    magnitude = value if value >= 0 else ~value
    return tlv(0x02, value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True))


def octet_string(value: bytes) -> bytes:
    return tlv(0x04, value)


def bit_string(value: bytes) -> bytes:
    """A BIT STRING of whole octets (no unused bits), as keys and points are."""
    return tlv(0x03, b"\x00" + value)


def numeric_string(value: str) -> bytes:
    return tlv(0x12, value.encode("ascii"))


def utf8_string(value: str) -> bytes:
    return tlv(0x0C, value.encode("utf-8"))


def _in_utc(value: dt.datetime) -> dt.datetime:
    if value.utcoffset() is None:
        raise ValueError("DER times must be timezone-aware")
    return value.astimezone(dt.UTC)


def generalized_time(value: dt.datetime) -> bytes:
    """GeneralizedTime YYYYMMDDHHMMSSZ (fractions only when present, without trailing zeros)."""
    value = _in_utc(value)
    text = value.strftime("%Y%m%d%H%M%S")
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return tlv(0x18, (text + "Z").encode("ascii"))


def utc_time(value: dt.datetime) -> bytes:
    """UTCTime YYMMDDHHMMSSZ for 1950 to 2049 (whole seconds; fractions are not representable)."""
    value = _in_utc(value)
    if not 1950 <= value.year <= 2049:
        raise ValueError("UTCTime covers the years 1950 to 2049 only")
    return tlv(0x17, value.strftime("%y%m%d%H%M%SZ").encode("ascii"))


@lru_cache(maxsize=64)
def object_identifier(dotted: str) -> bytes:
    """OBJECT IDENTIFIER from its dotted form (the protocol uses a handful, hence the cache)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    if len(arcs) < 2 or arcs[0] > 2 or (arcs[0] < 2 and arcs[1] > 39):
        raise ValueError(f"not an object identifier: {dotted}")
    contents = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        contents.extend(reversed(chunk))
    return tlv(0x06, bytes(contents))


def algorithm_identifier(dotted: str, parameters: bytes | None = None) -> bytes:
    """AlgorithmIdentifier: the OID, then the parameters' TLV when there are any."""
    return sequence(object_identifier(dotted), parameters or b"")


# Universal types DER writes only in primitive form (X.690 10.2): BIT STRING, OCTET STRING, the
# character strings and the times; a constructed one is BER.
_PRIMITIVE_ONLY = frozenset({0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, *range(0x12, 0x1F)})


def encoding_problem(data: bytes) -> str | None:
    """Why `data` is not one DER TLV (X.690 section 10), or None. Checked at every level: no
    indefinite length, every length in its shortest form, tags in their shortest form, the
    primitive-only universal types primitive, BOOLEAN 00/FF, INTEGERs minimal, the members of
    every universal SET OF in ascending order, nothing after the outer TLV. (A SET OF under an
    IMPLICIT tag is not visible by its tag: its reader re-tags it and checks it here.)"""
    pending = [(0, len(data), True)]
    while pending:
        start, end, single = pending.pop()
        offset = start
        while offset < end:
            identifier = data[offset]
            found = _one_tlv(data, offset, end)
            if isinstance(found, str):
                return found
            tag, constructed, body, offset = found
            if identifier == _SET and not _ascending(data, body, offset):
                return f"the members of a SET OF at byte {body} are not in ascending order"
            if constructed:
                pending.append((body, offset, False))
            if single and offset != end:
                return f"{end - offset} bytes follow the outer value"
    return None


_SET = 0x31


def _ascending(data: bytes, start: int, end: int) -> bool:
    """Whether the TLVs between `start` and `end` are in ascending order of their encodings
    (X.690 11.6). A member that is no TLV is reported when the walk reaches it."""
    members, offset = [], start
    while offset < end:
        found = _one_tlv(data, offset, end)
        if isinstance(found, str):
            return True
        members.append(data[offset : found[3]])
        offset = found[3]
    return members == sorted(members)


def _one_tlv(data: bytes, offset: int, end: int) -> tuple[int, bool, int, int] | str:
    """(tag number, constructed, contents start, next offset) of the TLV at `offset`, or why
    it is not DER."""
    if end - offset < 2:
        return f"a value is cut short at byte {offset}"
    identifier = data[offset]
    constructed = bool(identifier & 0x20)
    universal = identifier & 0xC0 == 0
    tag = identifier & 0x1F
    offset += 1
    if tag == 0x1F:
        if data[offset] == 0x80:
            return f"a tag at byte {offset} is not in its shortest form"
        tag = 0
        while offset < end and data[offset] & 0x80:
            tag = (tag << 7) | (data[offset] & 0x7F)
            offset += 1
        if offset >= end:
            return "a tag runs past the end"
        tag = (tag << 7) | data[offset]
        offset += 1
        if tag < 0x1F:
            return f"a tag at byte {offset} is not in its shortest form"
    if offset >= end:
        return "a length runs past the end"
    first = data[offset]
    offset += 1
    if first == 0x80:
        return f"an indefinite length at byte {offset - 1}"
    if first < 0x80:
        size = first
    else:
        count = first & 0x7F
        octets = data[offset : offset + count]
        if count == 0x7F or len(octets) != count:
            return f"a length at byte {offset - 1} runs past the end"
        size = int.from_bytes(octets, "big")
        if octets[0] == 0 or size < 0x80:
            return f"a length at byte {offset - 1} is not in its shortest form"
        offset += count
    body, after = offset, offset + size
    if after > end:
        return f"a value at byte {body} runs past the end"
    if universal and constructed and tag in _PRIMITIVE_ONLY:
        return f"a universal type {tag} at byte {body} is constructed (BER)"
    if universal and not constructed:
        contents = data[body:after]
        if tag == 0x01 and contents not in (b"\x00", b"\xff"):
            return f"a BOOLEAN at byte {body} is neither 00 nor FF"
        if tag == 0x02 and (
            not contents
            or (len(contents) > 1 and contents[0] == 0 and contents[1] < 0x80)
            or (len(contents) > 1 and contents[0] == 0xFF and contents[1] >= 0x80)
        ):
            return f"an INTEGER at byte {body} is not in its shortest form"
    return tag, constructed, body, after
