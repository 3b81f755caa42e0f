"""EKLF: build and open through the public API; trust, recipient and malformed-input refusals."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from factories.example import (
    DES_KEY,
    HMAC_KEY,
    example_key_load_file,
    example_request,
    key_load_file_with,
)
from factories.forgery import forged_eklf
from factories.pki import (
    KEY_LOAD_SIGNING,
    Party,
    ProtocolPki,
    agreement_usage,
    certify,
    kmc_name,
    make_pki,
    make_sm,
    signing_usage,
    sm_name,
)
from key_load_protocol import (
    ID_CT_ENHANCED_KEY_LOAD_FILE,
    ID_KP_KMC_AUDIT_SIGNING,
    DecryptionFailed,
    KeyLoadFile,
    MalformedMessage,
    ProtocolError,
    Reason,
    SignatureInvalid,
    UnsuitableRecipient,
    UnsupportedAlgorithm,
    UntrustedSigner,
    build_eklf,
    build_request,
    open_eklf,
    signed_data,
)


def _eklf(
    pki: ProtocolPki,
    klf: KeyLoadFile | None = None,
    *,
    sm: Party | None = None,
    signer: Party | None = None,
    extra_certificates: tuple[x509.Certificate, ...] = (),
) -> bytes:
    """An EKLF of the example (or `klf`) to the test SM (or `sm`), by the signer (or `signer`)."""
    signer = signer or pki.signer
    return build_eklf(
        klf or example_key_load_file(),
        sm_certificate=(sm or pki.sm).certificate,
        signer_key=signer.key,
        signer_certificate=signer.certificate,
        extra_certificates=extra_certificates,
    )


def _open(pki: ProtocolPki, der: bytes, **options: int) -> KeyLoadFile:
    return open_eklf(der, trusted_root=pki.root.certificate, sm_private_key=pki.sm.key, **options)


def _refusal(pki: ProtocolPki, der: bytes, **options: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as refused:
        _open(pki, der, **options)
    return refused.value


def _signed_by_kmc(pki: ProtocolPki, content: bytes) -> bytes:
    return signed_data.sign(
        ID_CT_ENHANCED_KEY_LOAD_FILE,
        content,
        key=pki.signer.key,
        certificate=pki.signer.certificate,
        signing_time=example_key_load_file().issue_time,
        certificates=(pki.signer.certificate,),
    )


def test_eklf_round_trips(pki: ProtocolPki) -> None:
    assert _open(pki, _eklf(pki)) == example_key_load_file()


def test_eklf_keys_do_not_appear_in_the_file(pki: ProtocolPki) -> None:
    der = _eklf(pki)
    assert DES_KEY not in der
    assert HMAC_KEY not in der


def test_each_eklf_uses_fresh_ephemeral_key_and_content_key(pki: ProtocolPki) -> None:
    first, second = _eklf(pki), _eklf(pki)
    assert first != second
    assert _open(pki, first) == _open(pki, second)


def test_eklf_with_many_keys_round_trips(pki: ProtocolPki) -> None:
    klf = key_load_file_with(25)
    assert len(klf.keys) == 25
    assert _open(pki, _eklf(pki, klf)) == klf


def test_eklf_with_no_keys_round_trips(pki: ProtocolPki) -> None:
    klf = dataclasses.replace(example_key_load_file(), keys=())
    assert _open(pki, _eklf(pki, klf)).keys == ()


def test_eklf_signed_under_an_intermediate_chains_through_carried_certificates(
    pki: ProtocolPki,
) -> None:
    der = _eklf(
        pki, signer=pki.signer_via_intermediate, extra_certificates=(pki.intermediate.certificate,)
    )
    assert _open(pki, der) == example_key_load_file()


def test_eklf_without_the_intermediate_is_untrusted(pki: ProtocolPki) -> None:
    der = _eklf(pki, signer=pki.signer_via_intermediate)
    refused = _refusal(pki, der)
    assert isinstance(refused, UntrustedSigner)
    assert refused.reason is Reason.UNTRUSTED_CHAIN


def test_eklf_from_another_kmc_is_untrusted(pki: ProtocolPki) -> None:
    other = make_pki()
    der = _eklf(pki, signer=other.signer)
    assert _refusal(pki, der).reason is Reason.UNTRUSTED_CHAIN


def test_eklf_signed_after_the_signer_certificate_expired_is_untrusted(pki: ProtocolPki) -> None:
    late = dataclasses.replace(
        example_key_load_file(), issue_time=dt.datetime(2040, 6, 1, tzinfo=dt.UTC)
    )
    assert _refusal(pki, _eklf(pki, late)).reason is Reason.UNTRUSTED_CHAIN


def test_eklf_signed_by_a_certificate_without_digital_signature_is_untrusted(
    pki: ProtocolPki,
) -> None:
    agreement_only = certify(
        kmc_name("Key Load Signer"),
        ec.generate_private_key(ec.SECP384R1()),
        pki.root,
        serial=9,
        usage=agreement_usage(),
        purposes=(KEY_LOAD_SIGNING,),
    )
    assert _refusal(pki, _eklf(pki, signer=agreement_only)).reason is Reason.SIGNER_KEY_USAGE


def _another_sm(pki: ProtocolPki) -> Party:
    """SM B, certified like SM A by the CA that issues SM certificates (here the intermediate)."""
    return make_sm(pki.intermediate, smid="60042000000002", serial=101)


def test_eklf_signed_by_another_sms_key_is_refused(pki: ProtocolPki) -> None:
    # SM B's certificate chains to the pinned root and allows digitalSignature; SM A's nonce is
    # in its unencrypted VKLOADREQ and its certificate is public: B can assemble the whole file.
    forged = dataclasses.replace(example_key_load_file(), sequence=2**63 - 1)
    der = forged_eklf(
        forged,
        sm_certificate=pki.sm.certificate,
        signer=_another_sm(pki),
        extra_certificates=(pki.intermediate.certificate,),
    )
    with pytest.raises(
        UntrustedSigner, match="^the signer certificate is not a KMC key-load signer$"
    ) as refused:
        _open(pki, der)
    assert refused.value.reason is Reason.SIGNER_PURPOSE


@pytest.mark.parametrize(
    "purposes",
    [
        (),
        (x509.ObjectIdentifier(ID_KP_KMC_AUDIT_SIGNING),),
        (ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,),
        (ExtendedKeyUsageOID.CODE_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION),
    ],
    ids=["no-eku", "audit-signing", "any-eku", "other-ekus"],
)
def test_eklf_signed_by_a_kmc_certificate_for_another_purpose_is_refused(
    pki: ProtocolPki, purposes: tuple[x509.ObjectIdentifier, ...]
) -> None:
    other_signer = certify(
        kmc_name("Audit Signer"),
        ec.generate_private_key(ec.SECP384R1()),
        pki.root,
        serial=12,
        usage=signing_usage(),
        purposes=purposes,
    )
    der = forged_eklf(
        example_key_load_file(), sm_certificate=pki.sm.certificate, signer=other_signer
    )
    assert _refusal(pki, der).reason is Reason.SIGNER_PURPOSE


def test_build_eklf_refuses_to_sign_with_a_certificate_that_is_not_a_key_load_signer(
    pki: ProtocolPki,
) -> None:
    with pytest.raises(UntrustedSigner, match="not a KMC key-load signer") as refused:
        _eklf(pki, signer=_another_sm(pki), extra_certificates=(pki.intermediate.certificate,))
    assert refused.value.reason is Reason.SIGNER_PURPOSE


def test_eklf_is_refused_to_an_sm_certificate_without_key_agreement(pki: ProtocolPki) -> None:
    signing_only = make_sm(pki.root, usage=signing_usage())
    with pytest.raises(UnsuitableRecipient, match="lacks keyUsage keyAgreement") as refused:
        _eklf(pki, sm=signing_only)
    assert refused.value.reason is Reason.RECIPIENT_KEY_USAGE


def test_eklf_is_refused_to_an_sm_certificate_without_key_identifier(pki: ProtocolPki) -> None:
    anonymous = make_sm(pki.root, with_ski=False)
    with pytest.raises(UnsuitableRecipient) as refused:
        _eklf(pki, sm=anonymous)
    assert refused.value.reason is Reason.RECIPIENT_NO_KEY_ID


def test_eklf_is_refused_to_another_sms_certificate(pki: ProtocolPki) -> None:
    other = make_sm(pki.root, smid="60042000000002")
    with pytest.raises(UnsuitableRecipient) as refused:
        _eklf(pki, sm=other)
    assert refused.value.reason is Reason.RECIPIENT_SMID_MISMATCH


def test_eklf_is_refused_to_a_p256_sm_certificate(pki: ProtocolPki) -> None:
    p256 = certify(
        sm_name(example_key_load_file().smid),
        ec.generate_private_key(ec.SECP256R1()),
        pki.root,
        serial=11,
        usage=agreement_usage(),
    )
    with pytest.raises(UnsupportedAlgorithm) as refused:
        _eklf(pki, sm=p256)
    assert refused.value.reason is Reason.UNSUPPORTED_CURVE


def test_eklf_does_not_open_with_another_sms_key(pki: ProtocolPki) -> None:
    with pytest.raises(DecryptionFailed) as refused:
        open_eklf(
            _eklf(pki),
            trusted_root=pki.root.certificate,
            sm_private_key=ec.generate_private_key(ec.SECP384R1()),
        )
    assert refused.value.reason is Reason.NOT_FOR_THIS_KEY


def test_eklf_does_not_open_with_a_p256_key(pki: ProtocolPki) -> None:
    with pytest.raises(UnsupportedAlgorithm):
        open_eklf(
            _eklf(pki),
            trusted_root=pki.root.certificate,
            sm_private_key=ec.generate_private_key(ec.SECP256R1()),
        )


def test_tampered_ciphertext_is_refused_before_decryption(pki: ProtocolPki) -> None:
    der = _eklf(pki)
    envelope = cms.ContentInfo.load(
        cms.ContentInfo.load(der)["content"]["encap_content_info"]["content"].native
    )
    ciphertext = envelope["content"]["encrypted_content_info"]["encrypted_content"].native
    tampered = bytearray(der)
    tampered[der.index(ciphertext) + len(ciphertext) // 2] ^= 0x01
    refused = _refusal(pki, bytes(tampered))
    assert isinstance(refused, SignatureInvalid)
    assert refused.reason is Reason.DIGEST_MISMATCH


def test_flipped_bit_anywhere_in_the_content_is_refused(pki: ProtocolPki) -> None:
    der = _eklf(pki)
    start = der.index(b"\x06\x09\x60\x86\x48\x01\x65\x03\x04\x01\x2a")  # aes256-CBC OID
    for offset in range(start, start + 200, 13):
        tampered = bytearray(der)
        tampered[offset] ^= 0x80
        assert isinstance(_refusal(pki, bytes(tampered)), ProtocolError)


def test_eklf_without_the_signer_certificate_is_refused(pki: ProtocolPki) -> None:
    info = cms.ContentInfo.load(_eklf(pki))
    info["content"]["certificates"] = []
    refused = _refusal(pki, info.dump(force=True))
    assert refused.reason is Reason.SIGNER_NOT_FOUND


def test_a_vkloadreq_is_not_an_eklf(pki: ProtocolPki) -> None:
    request = build_request(
        example_request(), sm_private_key=pki.sm.key, sm_certificate=pki.sm.certificate
    )
    assert _refusal(pki, request).reason is Reason.WRONG_ECONTENT_TYPE


def test_signed_content_that_is_not_an_envelope_is_refused(pki: ProtocolPki) -> None:
    data = cms.ContentInfo({"content_type": "data", "content": b"keys"}).dump()
    assert _refusal(pki, _signed_by_kmc(pki, data)).reason is Reason.WRONG_CONTENT_TYPE


def test_signed_garbage_inside_is_refused_as_not_der(pki: ProtocolPki) -> None:
    assert _refusal(pki, _signed_by_kmc(pki, b"\x30\x82\xff")).reason is Reason.NOT_DER


def test_oversized_eklf_is_refused(pki: ProtocolPki) -> None:
    der = _eklf(pki)
    assert _refusal(pki, der, max_size=len(der) - 1).reason is Reason.TOO_LARGE


@pytest.mark.parametrize("garbage", [b"", b"\x30", b"\xff" * 64, b"\x30\x80\x00\x00"])
def test_garbage_is_refused_as_not_der(pki: ProtocolPki, garbage: bytes) -> None:
    assert _refusal(pki, garbage).reason is Reason.NOT_DER


def test_every_truncation_is_refused_cleanly(pki: ProtocolPki) -> None:
    der = _eklf(pki)
    for length in range(0, len(der), 11):
        assert isinstance(_refusal(pki, der[:length]), MalformedMessage)
