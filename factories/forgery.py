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
