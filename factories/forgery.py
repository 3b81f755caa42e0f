"""An attacker's EKLF: the same CMS a KMC builds, signed by whatever key the attacker holds.

`build_eklf` refuses to sign with a certificate that is not a KMC key-load signer, so a forger
assembles the envelope and signature from the protocol's building blocks, as any CMS library
could. Tests use this to show that readers (`open_eklf`, the SM emulator) refuse such files.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509

from factories.pki import Party
from key_load_protocol import ID_CT_ENHANCED_KEY_LOAD_FILE, KeyLoadFile, enveloped_data, signed_data
from key_load_protocol.codec import encode_key_load_file


def forged_eklf(
    klf: KeyLoadFile,
    *,
    sm_certificate: x509.Certificate,
    signer: Party,
    extra_certificates: Sequence[x509.Certificate] = (),
) -> bytes:
    """An EKLF of `klf` to the SM of `sm_certificate`, signed by `signer` with no purpose check."""
    envelope = enveloped_data.encrypt(
        encode_key_load_file(klf), recipient=sm_certificate, recipient_smid=klf.smid
    )
    return signed_data.sign(
        ID_CT_ENHANCED_KEY_LOAD_FILE,
        envelope,
        key=signer.key,
        certificate=signer.certificate,
        signing_time=klf.issue_time,
        certificates=(signer.certificate, *extra_certificates),
    )


def _tlvs(data: bytes) -> list[tuple[int, bytes, int]]:
    """The (identifier, contents, header length) of each DER TLV in `data` (one level)."""
    found, offset = [], 0
    while offset < len(data):
        identifier, first = data[offset], data[offset + 1]
        head = 2 if first < 0x80 else 2 + (first & 0x7F)
        size = first if first < 0x80 else int.from_bytes(data[offset + 2 : offset + head], "big")
        found.append((identifier, data[offset + head : offset + head + size], head))
        offset += head + size
    return found


def bered(der: bytes, depth: int, how: str) -> bytes:
    """`der` with every constructed value `depth` levels down re-encoded as BER: `indefinite`
    lengths (end-of-contents octets) or `long` (non-minimal, four length octets)."""

    def encode(data: bytes, level: int) -> bytes:
        out = b""
        for identifier, contents, _ in _tlvs(data):
            inner = encode(contents, level + 1) if identifier & 0x20 else contents
            if level == depth and identifier & 0x20:
                if how == "indefinite":
                    out += bytes((identifier, 0x80)) + inner + b"\x00\x00"
                    continue
                out += bytes((identifier, 0x84)) + len(inner).to_bytes(4, "big") + inner
                continue
            size = len(inner)
            length = (
                bytes((size,))
                if size < 0x80
                else bytes((0x80 | ((size.bit_length() + 7) // 8),))
                + size.to_bytes((size.bit_length() + 7) // 8, "big")
            )
            out += bytes((identifier,)) + length + inner
        return out

    return encode(der, 0)
