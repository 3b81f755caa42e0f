"""Regenerate the golden files of the worked example: `python -m tests.data.protocol.generate`.

Writes the certificates, the SM key and the three messages beside this file, and prints the
hex blocks and intermediate values that docs/protocol.md quotes. The output is a pure
function of the fixed inputs in `factories/example.py` and `factories/pki.py`, so running it again changes nothing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from factories.example import (
    CEK,
    EPHEMERAL_KEY,
    IV,
    example_key_load_file,
    example_request,
)
from factories.pki import make_pki
from key_load_protocol import build_eklf, build_request
from key_load_protocol.codec import encode_key_load_file

FOLDER = Path(__file__).parent

# RFC 5753 ECC-CMS-SharedInfo for id-aes192-wrap without ukm, spelled out byte by byte:
# SEQUENCE { SEQUENCE { OID 2.16.840.1.101.3.4.1.25 }, [2] { OCTET STRING 000000C0 } }
SHARED_INFO = bytes.fromhex("3015" + "300b0609608648016503040119" + "a2060404000000c0")


def vectors() -> dict[str, bytes]:
    """Every golden file, by name."""
    pki = make_pki(fixed=True)
    pem = serialization.Encoding.PEM
    return {
        "root.pem": pki.root.certificate.public_bytes(pem),
        "signer.pem": pki.signer.certificate.public_bytes(pem),
        "sm.pem": pki.sm.certificate.public_bytes(pem),
        "sm.key": pki.sm.key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "vkloadreq.der": build_request(
            example_request(), sm_private_key=pki.sm.key, sm_certificate=pki.sm.certificate
        ),
        "keyloadfile.der": encode_key_load_file(example_key_load_file()),
        "eklf.der": build_eklf(
            example_key_load_file(),
            sm_certificate=pki.sm.certificate,
            signer_key=pki.signer.key,
            signer_certificate=pki.signer.certificate,
            _ephemeral_key_for_test_vectors=EPHEMERAL_KEY,
            _cek_for_test_vectors=CEK,
            _iv_for_test_vectors=IV,
        ),
    }


def key_agreement_steps() -> dict[str, bytes]:
    """The RFC 5753 steps of the example, computed here from first principles for the docs."""
    sm_public = make_pki(fixed=True).sm.key.public_key()
    shared_secret = EPHEMERAL_KEY.exchange(ec.ECDH(), sm_public)
    kek = X963KDF(hashes.SHA384(), 24, SHARED_INFO).derive(shared_secret)
    return {
        "ephemeral public key": EPHEMERAL_KEY.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
        "ECDH shared secret Z": shared_secret,
        "ECC-CMS-SharedInfo": SHARED_INFO,
        "KEK": kek,
        "CEK": CEK,
        "IV": IV,
        "encryptedKey": aes_key_wrap(kek, CEK),
    }


def main() -> None:
    for name, data in vectors().items():
        (FOLDER / name).write_bytes(data)
        if name.endswith(".der"):
            print(f"<!-- vector: {name} -->\n```text")
            print("\n".join(textwrap.wrap(data.hex(), 64)))
            print("```\n")
    for name, value in key_agreement_steps().items():
        print(f"{name}: {value.hex()}")


if __name__ == "__main__":
    main()
