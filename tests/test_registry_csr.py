"""Reading registration requests: OpenSSL-made CSRs, every way a CSR can be wrong, the value formats.

Fresh SM requests come from `factories.csr.make_csr` (`key_load_protocol.csr.build_csr`).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from factories.csr import make_csr
from key_load_protocol.identifiers import IdMan, InvalidIdentifier, Smid
from kmc.errors import InvalidInput, PolicyRefusal
from sm_registry.csr import MAX_CSR_BYTES, parse_request
from sm_registry.identifiers import CertificationReference

DATA = Path(__file__).parent / "data" / "registry"
REF = "model=SM-9000,firmware=smfw,version=2.1.0,number=STS-CERT-0042"


def test_openssl_pem_csr_is_read():
    request = parse_request((DATA / "sm-p384.csr.pem").read_bytes())
    assert request.smid == Smid("600727000001")
    assert request.id_man == IdMan("1A2B")
    assert request.csr_der == (DATA / "sm-p384.csr.der").read_bytes()


def test_openssl_der_csr_gives_the_same_request_as_its_pem():
    pem = parse_request((DATA / "sm-p384.csr.pem").read_bytes())
    der = parse_request((DATA / "sm-p384.csr.der").read_bytes())
    assert der == pem


def test_public_key_is_the_subject_public_key_info():
    key = ec.generate_private_key(ec.SECP384R1())
    request = parse_request(make_csr("42", key=key))
    assert request.public_key_der == key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_request_without_ou_has_no_id_man():
    assert parse_request(make_csr("42", ou=None)).id_man is None


def test_lower_case_ou_is_read_as_the_id_man():
    assert parse_request(make_csr("42", ou="1a2b")).id_man == IdMan("1A2B")


@pytest.mark.parametrize(
    ("data", "reason", "match"),
    [
        (b"", "csr_empty", "empty"),
        (os.urandom(16) + b"\x00garbage", "csr_malformed", "not a well-formed PKCS#10"),
        ((DATA / "truncated.csr.der").read_bytes(), "csr_malformed", "not a well-formed"),
        (
            (DATA / "certificate-not-csr.pem").read_bytes(),
            "csr_wrong_pem_type",
            "PEM block is 'CERTIFICATE', expected 'CERTIFICATE REQUEST'",
        ),
        (
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            "csr_malformed",
            "PEM block does not hold",
        ),
        ((DATA / "bad-signature.csr.der").read_bytes(), "csr_bad_signature", "does not verify"),
        (b"0" * (MAX_CSR_BYTES + 1), "csr_too_large", "limit is 65536"),
    ],
    ids=[
        "empty",
        "garbage",
        "truncated",
        "wrong-pem",
        "bad-base64-body",
        "bad-signature",
        "oversize",
    ],
)
def test_malformed_requests_are_refused_precisely(data, reason, match):
    with pytest.raises(InvalidInput, match=match) as refused:
        parse_request(data)
    assert refused.value.reason == reason


@pytest.mark.parametrize("der", [True, False], ids=["der", "pem"])
def test_a_request_of_another_version_is_refused_as_malformed(der):
    """Found by tests/test_parser_fuzz.py: cryptography's InvalidVersion escaped as a 500."""
    valid = make_csr("1001", der=True)
    other_version = valid.replace(b"\x02\x01\x00", b"\x02\x01\x01", 1)
    if not der:
        body = base64.encodebytes(other_version).decode()
        other_version = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n".encode()
    with pytest.raises(InvalidInput, match="PKCS#10") as refused:
        parse_request(other_version)
    assert refused.value.reason == "csr_malformed"


def test_a_subject_attribute_of_the_wrong_string_type_is_refused_as_malformed():
    """Found by tests/test_parser_fuzz.py: a serialNumber typed BIT STRING made cryptography
    raise TypeError when the subject was read (a 500)."""
    valid = make_csr("1001", der=True)
    at = valid.index(bytes.fromhex("0603550405")) + 5  # id-at-serialNumber, then its value
    length = valid[at + 1]
    bit_string = bytes([0x03, length, 0]) + valid[at + 3 : at + 2 + length]
    with pytest.raises(InvalidInput, match="PKCS#10") as refused:
        parse_request(valid[:at] + bit_string + valid[at + 2 + length :])
    assert refused.value.reason == "csr_malformed"


@pytest.mark.parametrize(
    ("name", "reason", "match"),
    [
        ("rsa.csr.pem", "unsupported_key", "RSA keys are refused"),
        ("p256.csr.pem", "unsupported_curve", "curve secp256r1 is refused"),
        ("ed25519.csr.pem", "unsupported_key", "Ed25519PublicKey keys are refused"),
    ],
)
def test_keys_other_than_p384_are_refused(name, reason, match):
    with pytest.raises(PolicyRefusal, match=match) as refused:
        parse_request((DATA / name).read_bytes())
    assert refused.value.reason == reason


def test_p521_is_refused():
    csr = make_csr("42", key=ec.generate_private_key(ec.SECP521R1()))  # type: ignore[arg-type]
    with pytest.raises(PolicyRefusal, match="secp521r1"):
        parse_request(csr)


def test_request_without_serial_number_is_refused():
    key = ec.generate_private_key(ec.SECP384R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SM")]))
        .sign(key, hashes.SHA384())
    )
    with pytest.raises(InvalidInput, match="no serialNumber") as refused:
        parse_request(csr.public_bytes(serialization.Encoding.PEM))
    assert refused.value.reason == "csr_no_smid"


@pytest.mark.parametrize("smid", ["", "0", "0123", "12345678901234567", "12a4", "-5", "1 2"])
def test_bad_smids_are_refused(smid):
    with pytest.raises(InvalidIdentifier, match="SMID must be 1-16 decimal digits") as refused:
        Smid(smid)
    assert refused.value.code == "invalid_smid"


@pytest.mark.parametrize("smid", ["1", "600727000001", "9999999999999999"])
def test_smids_of_up_to_16_digits_are_accepted(smid):
    assert Smid(smid).value == smid


def test_smid_in_a_csr_is_checked():
    with pytest.raises(InvalidInput, match="SMID must be") as refused:
        parse_request(make_csr("00042"))
    assert refused.value.reason == "invalid_smid"


@pytest.mark.parametrize("id_man", ["", "123", "12345", "GHIJ", "1A2"])
def test_bad_id_mans_are_refused(id_man):
    with pytest.raises(InvalidIdentifier, match="ID_man must be 4 hexadecimal digits") as refused:
        IdMan.parse(id_man)
    assert refused.value.code == "invalid_id_man"


def test_id_man_is_held_upper_case():
    assert IdMan.parse(" 1a2b ").value == "1A2B"


def test_certification_reference_round_trips():
    ref = CertificationReference.parse(REF)
    assert (ref.model, ref.firmware, ref.version, ref.number) == (
        "SM-9000",
        "smfw",
        "2.1.0",
        "STS-CERT-0042",
    )
    assert CertificationReference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("model=A,firmware=B,version=C", "lacks number"),
        ("model=A,firmware=B,version=C,number=D,model=E", "model given twice"),
        ("model=A,firmware=B,version=C,number=D,colour=red", "syntax is"),
        ("model=,firmware=B,version=C,number=D", "certification model must be"),
        ("model=A,firmware=B,version=" + "9" * 61 + ",number=D", "version must be 1-60"),
    ],
)
def test_bad_certification_references_are_refused(text, match):
    with pytest.raises(InvalidInput, match=match):
        CertificationReference.parse(text)
