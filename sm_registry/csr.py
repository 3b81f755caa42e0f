"""SM registration requests (PKCS#10 CSRs, built by `key_load_protocol.csr.build_csr`), read and checked.

Pure: no Flask, no database. The CSR's own signature is the SM's proof that it holds the private
key. Everything an attacker controls is checked here, before the service touches storage:
size, encoding, signature, key algorithm and curve (P-384 only), subject fields.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from key_load_protocol.identifiers import IdMan, Smid
from kmc.errors import InvalidInput, PolicyRefusal, identifier_input

MAX_CSR_BYTES = 64 * 1024
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_CSR_PEM_LABELS = (b"CERTIFICATE REQUEST", b"NEW CERTIFICATE REQUEST")


@dataclass(frozen=True)
class RegistrationRequest:
    """A CSR that verified: who the SM says it is, and the key it proved it holds."""

    smid: Smid
    id_man: IdMan | None  # the subject OU, when the CSR names one
    public_key_der: bytes  # SubjectPublicKeyInfo
    csr_der: bytes

    @property
    def public_key_sha256(self) -> str:
        return hashlib.sha256(self.public_key_der).hexdigest()

    def __repr__(self) -> str:
        return f"RegistrationRequest(smid={self.smid.value}, id_man={self.id_man}, key={self.public_key_sha256[:16]}…)"


def _der(data: bytes) -> bytes:
    """The CSR's DER bytes, from PEM or DER input."""
    stripped = data.lstrip()
    if not stripped.startswith(b"-----BEGIN"):
        return data
    labels = _PEM_BLOCK.findall(stripped)
    label = labels[0] if labels else b"?"
    if label not in _CSR_PEM_LABELS:
        raise InvalidInput(
            "csr_wrong_pem_type",
            f"PEM block is '{label.decode(errors='replace')}', expected 'CERTIFICATE REQUEST'",
        )
    requests = sum(found in _CSR_PEM_LABELS for found in labels)
    if requests > 1:
        raise InvalidInput(
            "several_csrs", f"the PEM holds {requests} CSRs; give one CSR per file (one SM each)"
        )
    try:
        return x509.load_pem_x509_csr(stripped).public_bytes(serialization.Encoding.DER)
    except (ValueError, TypeError, x509.InvalidVersion):
        # TypeError: cryptography reading a name attribute of a string type its OID may not
        # have (a serialNumber typed BIT STRING, found by tests/test_parser_fuzz.py).
        raise InvalidInput(
            "csr_malformed", "the PEM block does not hold a well-formed PKCS#10 request"
        ) from None


def _single(csr: x509.CertificateSigningRequest, oid: x509.ObjectIdentifier) -> str | None:
    values = csr.subject.get_attributes_for_oid(oid)
    if len(values) > 1:
        raise InvalidInput(
            "csr_subject", f"the CSR subject repeats {oid._name}; each may appear once"
        )
    if not values:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("ascii", "replace")


def parse_request(data: bytes) -> RegistrationRequest:
    """Verify a CSR (PEM or DER) and return what it asserts; refuse anything else precisely."""
    if len(data) > MAX_CSR_BYTES:
        raise InvalidInput(
            "csr_too_large", f"the CSR is too large: the limit is {MAX_CSR_BYTES} bytes"
        )
    if not data.strip():
        raise InvalidInput("csr_empty", "the CSR file is empty")
    der = _der(data)
    try:
        csr = x509.load_der_x509_csr(der)
        key = csr.public_key()
        signature_ok = csr.is_signature_valid
        subject_smid = _single(csr, NameOID.SERIAL_NUMBER)
        subject_ou = _single(csr, NameOID.ORGANIZATIONAL_UNIT_NAME)
    except (ValueError, TypeError, x509.InvalidVersion):
        # TypeError: cryptography reading a name attribute of a string type its OID may not
        # have (a serialNumber typed BIT STRING, found by tests/test_parser_fuzz.py).
        raise InvalidInput(
            "csr_malformed", "not a well-formed PKCS#10 certificate request (PEM or DER)"
        ) from None
    except x509.UnsupportedGeneralNameType:
        raise InvalidInput("csr_malformed", "the CSR uses an unsupported name type") from None
    except UnsupportedAlgorithm:
        raise PolicyRefusal(
            "unsupported_key", "the CSR key is of an unsupported type; SMs use ECC P-384"
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        raise PolicyRefusal(
            "unsupported_key", "RSA keys are refused: an SM key must be ECC on curve P-384"
        )
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise PolicyRefusal(
            "unsupported_key",
            f"{type(key).__name__.removeprefix('_')} keys are refused: an SM key must be ECC on curve P-384",
        )
    if not isinstance(key.curve, ec.SECP384R1):
        raise PolicyRefusal(
            "unsupported_curve",
            f"curve {key.curve.name} is refused: an SM key must be on curve P-384 (secp384r1)",
        )
    if not signature_ok:
        raise InvalidInput(
            "csr_bad_signature",
            "the CSR signature does not verify: no proof the SM holds the private key",
        )
    if subject_smid is None:
        raise InvalidInput("csr_no_smid", "the CSR subject has no serialNumber (the SMID)")
    with identifier_input():
        smid = Smid(subject_smid)
        id_man = None if subject_ou is None else IdMan.parse(subject_ou)
    return RegistrationRequest(
        smid=smid,
        id_man=id_man,
        public_key_der=key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        csr_der=der,
    )
