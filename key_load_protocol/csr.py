"""The SM's registration request: a PKCS#10 CSR for its P-384 key, naming its SMID and ID_man.

The one CSR builder, shared by the SM emulator (which registers with it), the tests and the
benchmarks; the KMC registry reads it with `sm_registry.csr.parse_request` (docs/registry.md):
the SMID from the subject serialNumber, the manufacturer from the subject OU.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def sm_subject(smid: str, id_man: str | None) -> x509.Name:
    """OU=ID_man (when given), CN=SM <smid>, serialNumber=<smid>: the SM's distinguished name."""
    names = [
        x509.NameAttribute(NameOID.COMMON_NAME, f"SM {smid}"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, smid),
    ]
    if id_man is not None:
        names.insert(0, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, id_man))
    return x509.Name(names)


def build_csr(
    key: ec.EllipticCurvePrivateKey,
    smid: str,
    id_man: str | None = None,
    *,
    der: bool = False,
) -> bytes:
    """The CSR (PEM, or DER when `der`) an SM sends to register, signed ECDSA-SHA384 by `key`.

    Written as given, without checks (any curve, any SMID, no OU when `id_man` is None), so
    tests can also build requests the KMC must refuse.
    """
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(sm_subject(smid, id_man))
        .sign(key, hashes.SHA384())
    )
    return csr.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)
