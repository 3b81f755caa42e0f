"""EKLF: the KMC's answer, a KeyLoadFile enveloped to one SM and signed by the KMC key-load signer.

    ContentInfo(SignedData by the key-load signer,
        eContentType id-ct-enhancedKeyLoadFile,
        eContent = DER ContentInfo(EnvelopedData to the SM, content = DER KeyLoadFile))

The signed content is a whole ContentInfo so that `openssl cms -verify -out` hands
`openssl cms -decrypt` something it can read.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from key_load_protocol import enveloped_data, signed_data
from key_load_protocol.certificates import check_key_load_signer, verify_chain
from key_load_protocol.codec import decode_key_load_file, encode_key_load_file
from key_load_protocol.errors import Reason, UntrustedSigner
from key_load_protocol.model import KeyLoadFile
from key_load_protocol.schema import ID_CT_ENHANCED_KEY_LOAD_FILE

MAX_EKLF_SIZE = 1024 * 1024


def build_eklf(
    klf: KeyLoadFile,
    *,
    sm_certificate: x509.Certificate,
    signer_key: ec.EllipticCurvePrivateKey,
    signer_certificate: x509.Certificate,
    extra_certificates: Sequence[x509.Certificate] = (),
    key_agreement: enveloped_data.KeyAgreement | None = None,
    _ephemeral_key_for_test_vectors: ec.EllipticCurvePrivateKey | None = None,
    _cek_for_test_vectors: bytes | None = None,
    _iv_for_test_vectors: bytes | None = None,
) -> bytes:
    """The DER EKLF carrying `klf` to the SM of `sm_certificate`, signed at `klf.issue_time`.

    The signer certificate must carry the keyLoadSigning extended key usage (SMs refuse any
    other signer, so this fails before any work). The SM certificate must be P-384, allow
    keyAgreement, carry a subjectKeyIdentifier and name `klf.smid` as subject serialNumber.
    `extra_certificates` are intermediates between the signer and the root. `key_agreement`
    does the ECDH elsewhere (a token; see `enveloped_data.encrypt`). The
    `_..._for_test_vectors` arguments replace fresh randomness and exist only to reproduce the
    worked example in docs/protocol.md.
    """
    check_key_load_signer(signer_certificate)
    envelope = enveloped_data.encrypt(
        encode_key_load_file(klf),
        recipient=sm_certificate,
        recipient_smid=klf.smid,
        ephemeral_key=_ephemeral_key_for_test_vectors,
        key_agreement=key_agreement,
        cek=_cek_for_test_vectors,
        iv=_iv_for_test_vectors,
    )
    return signed_data.sign(
        ID_CT_ENHANCED_KEY_LOAD_FILE,
        envelope,
        key=signer_key,
        certificate=signer_certificate,
        signing_time=klf.issue_time,
        certificates=(signer_certificate, *extra_certificates),
    )


def open_eklf(
    der: bytes,
    *,
    trusted_root: x509.Certificate,
    sm_private_key: ec.EllipticCurvePrivateKey,
    max_size: int = MAX_EKLF_SIZE,
) -> KeyLoadFile:
    """Verify an EKLF's signature, chain to `trusted_root` and signer purpose; decrypt and parse it.

    The signer must carry the keyLoadSigning extended key usage: other certificates under the
    same root (SMs, the audit signer) are refused with `Reason.SIGNER_PURPOSE`. Nothing is
    decrypted before the signature, chain and purpose check out (AES-CBC has no integrity of
    its own). The SM's own checks (SMID, nonce, sequence) follow with `KeyLoadFile.check_answers`.
    """
    signed = signed_data.read(
        der, content_type=ID_CT_ENHANCED_KEY_LOAD_FILE, max_size=max_size, what="EKLF"
    )
    signer = signed.signer_certificate()
    signed.verify_signature(signer.public_key())
    if signed.signing_time is None:
        raise UntrustedSigner(Reason.MISSING_SIGNING_TIME, "the EKLF has no signing time")
    intermediates = [c for c in signed.certificates if c != signer]
    verify_chain(signer, intermediates, trusted_root, signed.signing_time)
    check_key_load_signer(signer)
    return decode_key_load_file(enveloped_data.decrypt(signed.content, sm_private_key))
