"""VKLOADREQ: build, parse and verify through the public API; every malformed input refused precisely."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from factories.example import example_request
from factories.forgery import bered
from factories.pki import (
    NOT_AFTER,
    ProtocolPki,
    agreement_usage,
    certify,
    make_sm,
    signing_usage,
    sm_name,
)
from key_load_protocol import (
    ID_CT_VK_LOAD_REQUEST,
    InvalidValue,
    KeyLoadRequest,
    MalformedMessage,
    ProtocolError,
    Reason,
    SignatureInvalid,
    UnsupportedAlgorithm,
    UntrustedSigner,
    build_request,
    parse_request,
    signed_data,
)
from key_load_protocol.codec import encode_request
from key_load_protocol.der import encoding_problem
from key_load_protocol.der import octet_string as der_octet_string
from key_load_protocol.der import tlv as der_tlv
from key_load_protocol.schema import VKLoadRequest


def _signed(pki: ProtocolPki, request: KeyLoadRequest | None = None, **options: bool) -> bytes:
    return build_request(
        request or example_request(),
        sm_private_key=pki.sm.key,
        sm_certificate=pki.sm.certificate,
        **options,
    )


def _refusal(der: bytes, **options: int) -> ProtocolError:
    with pytest.raises(ProtocolError) as refused:
        parse_request(der, **options)
    return refused.value


def test_request_round_trips_and_verifies(pki: ProtocolPki) -> None:
    der = _signed(pki)
    parsed = parse_request(der)
    parsed.verify(pki.sm.certificate)
    assert parsed.request == example_request()
    assert parsed.der == der


def test_request_for_all_authorised_keys_round_trips(pki: ProtocolPki) -> None:
    request = dataclasses.replace(example_request(), keys=None)
    assert parse_request(_signed(pki, request)).request.keys is None


def test_request_names_its_signer_by_the_certificate_key_identifier(pki: ProtocolPki) -> None:
    ski = pki.sm.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert parse_request(_signed(pki)).signer_key_id == ski.value.digest


def test_request_digest_is_sha256_of_the_bytes_received(pki: ProtocolPki) -> None:
    der = _signed(pki)
    assert parse_request(der).digest == hashlib.sha256(der).digest()


def test_signing_is_deterministic(pki: ProtocolPki) -> None:
    assert _signed(pki) == _signed(pki)


def test_request_without_embedded_certificate_still_verifies(pki: ProtocolPki) -> None:
    der = _signed(pki, include_certificate=False)
    assert len(der) < len(_signed(pki))
    parse_request(der).verify(pki.sm.certificate)


def test_request_signed_by_another_sm_is_refused(pki: ProtocolPki) -> None:
    other = make_sm(pki.root)
    with pytest.raises(SignatureInvalid) as refused:
        parse_request(_signed(pki)).verify(other.certificate)
    assert refused.value.reason is Reason.SIGNER_MISMATCH


def test_request_for_another_smid_is_refused(pki: ProtocolPki) -> None:
    request = dataclasses.replace(example_request(), smid="60042000000099")
    with pytest.raises(SignatureInvalid, match="SMID is not the SM certificate's") as refused:
        parse_request(_signed(pki, request)).verify(pki.sm.certificate)
    assert refused.value.reason is Reason.SMID_MISMATCH


def test_request_by_sm_certificate_without_digital_signature_is_refused(pki: ProtocolPki) -> None:
    agreement_only = make_sm(pki.root, key=pki.sm.key, usage=agreement_usage())
    with pytest.raises(UntrustedSigner, match="lacks keyUsage digitalSignature"):
        parse_request(_signed(pki)).verify(agreement_only.certificate)


def test_request_outside_the_certificate_validity_is_refused(pki: ProtocolPki) -> None:
    late = dataclasses.replace(example_request(), request_time=NOT_AFTER.replace(year=2041))
    with pytest.raises(UntrustedSigner) as refused:
        parse_request(_signed(pki, late)).verify(pki.sm.certificate)
    assert refused.value.reason is Reason.CERTIFICATE_NOT_VALID


def test_tampered_request_content_is_refused(pki: ProtocolPki) -> None:
    der = bytearray(_signed(pki))
    smid_at = der.index(b"60042000000001")
    der[smid_at + 13] = ord("2")
    parsed = parse_request(bytes(der))
    assert parsed.request.smid == "60042000000002"
    with pytest.raises(SignatureInvalid) as refused:
        parsed.verify(make_sm(pki.root, smid="60042000000002", key=pki.sm.key).certificate)
    assert refused.value.reason is Reason.DIGEST_MISMATCH


def test_tampered_signature_is_refused(pki: ProtocolPki) -> None:
    info = cms.ContentInfo.load(_signed(pki))
    signer = info["content"]["signer_infos"][0]
    signature = bytearray(signer["signature"].native)
    signature[-1] ^= 1
    signer["signature"] = bytes(signature)
    with pytest.raises(SignatureInvalid) as refused:
        parse_request(info.dump(force=True)).verify(pki.sm.certificate)
    assert refused.value.reason is Reason.BAD_SIGNATURE


def test_request_signed_with_a_p256_key_is_refused(pki: ProtocolPki) -> None:
    p256 = certify(
        sm_name("60042000000001"),
        ec.generate_private_key(ec.SECP256R1()),
        pki.root,
        serial=7,
        usage=signing_usage(),
    )
    der = build_request(example_request(), sm_private_key=p256.key, sm_certificate=p256.certificate)
    with pytest.raises(UnsupportedAlgorithm) as refused:
        parse_request(der).verify(p256.certificate)
    assert refused.value.reason is Reason.UNSUPPORTED_CURVE


def test_building_with_a_key_the_certificate_does_not_certify_is_refused(pki: ProtocolPki) -> None:
    with pytest.raises(InvalidValue) as refused:
        build_request(
            example_request(), sm_private_key=pki.signer.key, sm_certificate=pki.sm.certificate
        )
    assert refused.value.reason is Reason.KEY_MISMATCH


@pytest.mark.parametrize(
    "garbage",
    [b"", b"\x00", b"hello world", b"\x30\x80", b"\x30\x03\x02\x01", bytes(100)],
)
def test_garbage_is_refused_as_not_der(garbage: bytes) -> None:
    refused = _refusal(garbage)
    assert isinstance(refused, MalformedMessage)
    assert refused.reason is Reason.NOT_DER


def test_every_truncation_is_refused_cleanly(pki: ProtocolPki) -> None:
    der = _signed(pki)
    for length in range(0, len(der), 7):
        assert isinstance(_refusal(der[:length]), MalformedMessage)


def test_trailing_data_is_refused(pki: ProtocolPki) -> None:
    assert _refusal(_signed(pki) + b"\x00").reason is Reason.NOT_DER


def test_oversized_request_is_refused_before_parsing(pki: ProtocolPki) -> None:
    der = _signed(pki)
    refused = _refusal(der, max_size=len(der) - 1)
    assert refused.reason is Reason.TOO_LARGE
    parse_request(der, max_size=len(der))


def test_non_signed_data_is_refused() -> None:
    data = cms.ContentInfo({"content_type": "data", "content": b"VKLOADREQ"}).dump()
    assert _refusal(data).reason is Reason.WRONG_CONTENT_TYPE


def _resigned_content(pki: ProtocolPki, content_type: str, content: bytes) -> bytes:
    return signed_data.sign(
        content_type,
        content,
        key=pki.sm.key,
        certificate=pki.sm.certificate,
        signing_time=example_request().request_time,
        certificates=(),
    )


def test_signed_data_of_another_content_type_is_refused(pki: ProtocolPki) -> None:
    der = _resigned_content(pki, "1.2.840.113549.1.7.1", encode_request(example_request()))
    refused = _refusal(der)
    assert refused.reason is Reason.WRONG_ECONTENT_TYPE


def test_content_that_is_not_a_vkloadrequest_is_refused(pki: ProtocolPki) -> None:
    assert _refusal(_resigned_content(pki, ID_CT_VK_LOAD_REQUEST, b"\x30\x00")).reason is (
        Reason.NOT_DER
    )


def test_content_out_of_range_is_refused_with_the_field_named(pki: ProtocolPki) -> None:
    content = VKLoadRequest.load(encode_request(example_request()))
    content["smid"] = "12345678901234567"
    refused = _refusal(_resigned_content(pki, ID_CT_VK_LOAD_REQUEST, content.dump(force=True)))
    assert isinstance(refused, InvalidValue)
    assert refused.field == "smid"


def test_unknown_request_version_is_refused(pki: ProtocolPki) -> None:
    content = VKLoadRequest.load(encode_request(example_request()))
    content["version"] = 2
    refused = _refusal(_resigned_content(pki, ID_CT_VK_LOAD_REQUEST, content.dump(force=True)))
    assert refused.reason is Reason.UNSUPPORTED_VERSION


def test_sha256_digest_is_refused(pki: ProtocolPki) -> None:
    info = cms.ContentInfo.load(_signed(pki))
    info["content"]["signer_infos"][0]["digest_algorithm"] = {"algorithm": "sha256"}
    assert _refusal(info.dump(force=True)).reason is Reason.UNSUPPORTED_DIGEST


@pytest.mark.parametrize("how", ["indefinite", "long"])
@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_ber_at_any_layer_of_the_wrapper_is_not_der(pki: ProtocolPki, depth: int, how: str) -> None:
    # depth 0: ContentInfo; 1: [0] EXPLICIT; 2: SignedData; 3: its fields (certificates, signer).
    ber = bered(_signed(pki), depth, how)
    assert ber != _signed(pki)
    refused = _refusal(ber)
    assert refused.reason is Reason.NOT_DER, refused
    assert "not DER" in str(refused)


def test_a_constructed_octet_string_is_not_der(pki: ProtocolPki) -> None:
    der = _signed(pki)
    content = encode_request(example_request())
    primitive = der_octet_string(content)
    assert primitive in der
    half = len(content) // 2
    pieces = der_octet_string(content[:half]) + der_octet_string(content[half:])
    constructed = b"\x24\x80" + pieces + b"\x00\x00"  # BER: an OCTET STRING in two pieces
    refused = _refusal(der.replace(primitive, constructed))
    assert refused.reason is Reason.NOT_DER


def test_der_walker_accepts_what_it_writes_and_refuses_non_minimal_integers() -> None:
    assert encoding_problem(b"\x30\x03\x02\x01\x05") is None
    assert "INTEGER" in (encoding_problem(b"\x30\x04\x02\x02\x00\x05") or "")
    assert "shortest" in (encoding_problem(b"\x30\x81\x03\x02\x01\x05") or "")
    assert "follow" in (encoding_problem(b"\x02\x01\x05\x00") or "")
    assert "BOOLEAN" in (encoding_problem(b"\x01\x01\x01") or "")


def test_an_unsorted_set_of_is_not_der() -> None:
    """X.690 11.6: DER puts the members of a SET OF in ascending order of their encodings."""
    assert encoding_problem(b"\x31\x06\x02\x01\x01\x02\x01\x02") is None
    assert "ascending" in (encoding_problem(b"\x31\x06\x02\x01\x02\x02\x01\x01") or "")
    assert "ascending" in (encoding_problem(b"\x30\x08\x31\x06\x02\x01\x02\x02\x01\x01") or "")


def test_signed_attributes_out_of_order_are_not_der(
    pki: ProtocolPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signed attributes are an [0] IMPLICIT SET OF, invisible to a walk by tag: a signer
    that signs them unsorted (BER) is refused before its signature is checked."""
    monkeypatch.setattr(
        signed_data.der, "set_of", lambda members: der_tlv(0x31, b"".join(reversed(list(members))))
    )
    unsorted = _signed(pki)
    monkeypatch.undo()
    refused = _refusal(unsorted)
    assert refused.reason is Reason.NOT_DER, refused
    assert "ascending" in str(refused)


def test_a_constructed_implicit_octet_string_is_refused(
    pki: ProtocolPki, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signer's [0] IMPLICIT subjectKeyIdentifier in the constructed form (BER): no
    universal tag tells the walk it is an OCTET STRING, but the structure's parser refuses it."""
    implicit = signed_data.der.implicit

    def constructed(number: int, encoded: bytes) -> bytes:
        return der_tlv(0xA0 | number, encoded) if encoded[0] == 0x04 else implicit(number, encoded)

    monkeypatch.setattr(signed_data.der, "implicit", constructed)
    ber = _signed(pki)
    monkeypatch.undo()
    assert isinstance(_refusal(ber), MalformedMessage)
