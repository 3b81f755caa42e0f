"""CMS EnvelopedData (RFC 5652, RFC 5753) addressed to one SM's P-384 key-agreement key.

KeyAgreeRecipientInfo with ephemeral-static ECDH on P-384, the ANSI X9.63 KDF with SHA-384
(`dhSinglePass-stdDH-sha384kdf-scheme`) deriving a 192-bit KEK, `id-aes192-wrap` of a fresh
AES-256 content-encryption key, content encrypted with AES-256-CBC. CBC gives no integrity of its
own: an EKLF envelope is only ever opened after the KMC signature over it has verified.
This is exactly what `openssl cms -encrypt -keyid -keyopt ecdh_kdf_md:sha384 -aes256
-wrap aes192-wrap` produces; the reader refuses anything else (e.g. OpenSSL's default SHA-1 KDF).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from key_load_protocol import der, schema
from key_load_protocol.certificates import (
    key_usage,
    p384_private_key,
    p384_public_key,
    smid_of,
    subject_key_id,
)
from key_load_protocol.der import encoding_problem
from key_load_protocol.errors import (
    DecryptionFailed,
    InvalidValue,
    MalformedMessage,
    Reason,
    UnsuitableRecipient,
    UnsupportedAlgorithm,
    decoding,
)

# The originator side of ephemeral-static ECDH: the SM's public key in, (ephemeral public key,
# shared secret Z) out.
KeyAgreement = Callable[[ec.EllipticCurvePublicKey], tuple[ec.EllipticCurvePublicKey, bytes]]

CEK_LENGTH = 32
IV_LENGTH = 16
_KEK_LENGTH = 24
_BLOCK_BITS = 128


def recipient_key_id(certificate: x509.Certificate, smid: str) -> bytes:
    """The rKeyId to address `certificate`, once it is known to be fit to receive for `smid`.

    OpenSSL does not look at keyUsage when encrypting, so this is where an SM certificate
    without keyAgreement (a signing-only certificate) is refused.
    """
    p384_public_key(certificate.public_key(), "SM")
    usage = key_usage(certificate)
    if usage is None or not usage.key_agreement:
        raise UnsuitableRecipient(
            Reason.RECIPIENT_KEY_USAGE, "the SM certificate lacks keyUsage keyAgreement"
        )
    key_id = subject_key_id(certificate)
    if key_id is None:
        raise UnsuitableRecipient(
            Reason.RECIPIENT_NO_KEY_ID, "the SM certificate has no subjectKeyIdentifier"
        )
    if smid_of(certificate) != smid:
        raise UnsuitableRecipient(
            Reason.RECIPIENT_SMID_MISMATCH,
            f"the SM certificate's subject serialNumber is not SMID {smid}",
        )
    return key_id


# id-aes192-wrap with absent parameters (RFC 3565 section 2.3.2).
_WRAP_ALGORITHM = der.algorithm_identifier(schema.ID_AES192_WRAP)


def _kek(shared_secret: bytes, wrap_algorithm_der: bytes, ukm: bytes | None) -> bytes:
    """RFC 5753 section 3.1.2: X9.63 KDF over Z with the DER of ECC-CMS-SharedInfo.

    ECC-CMS-SharedInfo ::= SEQUENCE { keyInfo AlgorithmIdentifier (the wrap, byte for byte as
    sent), entityUInfo [0] EXPLICIT OCTET STRING OPTIONAL (the ukm), suppPubInfo [2] EXPLICIT
    OCTET STRING (the KEK length in bits, 32-bit big-endian) }
    """
    shared_info = der.sequence(
        wrap_algorithm_der,
        b"" if ukm is None else der.explicit(0, der.octet_string(ukm)),
        der.explicit(2, der.octet_string((_KEK_LENGTH * 8).to_bytes(4, "big"))),
    )
    kdf = X963KDF(algorithm=hashes.SHA384(), length=_KEK_LENGTH, sharedinfo=shared_info)
    return kdf.derive(shared_secret)


def encrypt(
    plaintext: bytes,
    *,
    recipient: x509.Certificate,
    recipient_smid: str,
    ephemeral_key: ec.EllipticCurvePrivateKey | None = None,
    key_agreement: KeyAgreement | None = None,
    cek: bytes | None = None,
    iv: bytes | None = None,
) -> bytes:
    """A DER ContentInfo(EnvelopedData) of `plaintext` that only the recipient's key opens.

    `key_agreement` makes the ephemeral key pair and the ECDH shared secret elsewhere (a
    PKCS#11 token); by default both happen here. `ephemeral_key`, `cek` and `iv` are fresh
    random values unless a test vector fixes them.
    """
    key_id = recipient_key_id(recipient, recipient_smid)
    static_key = p384_public_key(recipient.public_key(), "SM")
    if key_agreement is None:
        ephemeral = p384_private_key(
            ephemeral_key if ephemeral_key is not None else ec.generate_private_key(ec.SECP384R1()),
            "ephemeral",
        )
        ephemeral_public, shared_secret = (
            ephemeral.public_key(),
            ephemeral.exchange(ec.ECDH(), static_key),
        )
    else:
        ephemeral_public, shared_secret = key_agreement(static_key)
    cek = os.urandom(CEK_LENGTH) if cek is None else cek
    iv = os.urandom(IV_LENGTH) if iv is None else iv
    if len(cek) != CEK_LENGTH or len(iv) != IV_LENGTH:
        raise InvalidValue("cek", f"the CEK must be {CEK_LENGTH} bytes and the IV {IV_LENGTH}")
    kek = _kek(shared_secret, _WRAP_ALGORITHM, ukm=None)
    padder = padding.PKCS7(_BLOCK_BITS).padder()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    ciphertext = (
        encryptor.update(padder.update(plaintext) + padder.finalize()) + encryptor.finalize()
    )
    point = ephemeral_public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    agreement = der.sequence(
        der.integer(3),
        # originator [0] EXPLICIT, originatorKey [1] IMPLICIT; RFC 5753 section 3.1.1:
        # id-ecPublicKey with parameters absent, the curve is the recipient's.
        der.explicit(
            0,
            der.implicit(
                1,
                der.sequence(
                    der.algorithm_identifier(schema.ID_EC_PUBLIC_KEY), der.bit_string(point)
                ),
            ),
        ),
        der.algorithm_identifier(schema.ID_DH_SINGLE_PASS_STD_DH_SHA384_KDF, _WRAP_ALGORITHM),
        der.sequence(  # recipientEncryptedKeys: rKeyId [0] IMPLICIT, then encryptedKey
            der.sequence(
                der.implicit(0, der.sequence(der.octet_string(key_id))),
                der.octet_string(aes_key_wrap(kek, cek)),
            )
        ),
    )
    enveloped = der.sequence(
        der.integer(2),
        der.set_of([der.implicit(1, agreement)]),  # RecipientInfo kari [1]
        der.sequence(
            der.object_identifier(schema.ID_DATA),
            der.algorithm_identifier(schema.ID_AES256_CBC, der.octet_string(iv)),
            der.implicit(0, der.octet_string(ciphertext)),
        ),
    )
    return der.sequence(der.object_identifier(schema.ID_ENVELOPED_DATA), der.explicit(0, enveloped))


def decrypt(der: bytes, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The plaintext of a DER ContentInfo(EnvelopedData) addressed to `private_key`."""
    key = p384_private_key(private_key, "SM")
    problem = encoding_problem(der)
    if problem is not None:
        raise MalformedMessage(Reason.NOT_DER, f"the enveloped key-load file is not DER: {problem}")
    with decoding("the enveloped key-load file"):
        info = cms.ContentInfo.load(der, strict=True)
        if info["content_type"].native != "enveloped_data":
            raise MalformedMessage(
                Reason.WRONG_CONTENT_TYPE, "the signed content is not a CMS EnvelopedData"
            )
        enveloped = info["content"]
        iv, ciphertext = _encrypted_content(enveloped["encrypted_content_info"])
        agreements = [r.chosen for r in enveloped["recipient_infos"] if r.name == "kari"]
        if not agreements:
            raise UnsupportedAlgorithm(
                Reason.UNSUPPORTED_RECIPIENT_TYPE, "the envelope has no key-agreement recipient"
            )
        cek = _unwrap_content_key(agreements, key)
    decryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
    unpadder = padding.PKCS7(_BLOCK_BITS).unpadder()
    try:
        return (
            unpadder.update(decryptor.update(ciphertext) + decryptor.finalize())
            + unpadder.finalize()
        )
    except ValueError:
        raise DecryptionFailed(
            Reason.BAD_PADDING, "the decrypted content has bad padding"
        ) from None


def _encrypted_content(content_info: cms.EncryptedContentInfo) -> tuple[bytes, bytes]:
    if content_info["content_type"].native != "data":
        raise MalformedMessage(
            Reason.WRONG_ECONTENT_TYPE, "the encrypted content type is not id-data"
        )
    algorithm = content_info["content_encryption_algorithm"]
    if algorithm["algorithm"].dotted != schema.ID_AES256_CBC:
        raise UnsupportedAlgorithm(
            Reason.UNSUPPORTED_CONTENT_ENCRYPTION, "the content is not encrypted with AES-256-CBC"
        )
    iv = algorithm["parameters"].native
    ciphertext = content_info["encrypted_content"].native
    if not isinstance(iv, bytes) or len(iv) != IV_LENGTH:
        raise MalformedMessage(Reason.BAD_STRUCTURE, "the AES-256-CBC IV is not 16 bytes")
    if not isinstance(ciphertext, bytes) or not ciphertext or len(ciphertext) % IV_LENGTH:
        raise MalformedMessage(
            Reason.BAD_STRUCTURE, "the encrypted content is not whole AES blocks"
        )
    return iv, ciphertext


def _unwrap_content_key(
    agreements: list[cms.KeyAgreeRecipientInfo], key: ec.EllipticCurvePrivateKey
) -> bytes:
    """Try our key on every key-agreement recipient, as OpenSSL does; AES key unwrap tells a match."""
    for agreement in agreements:
        wrap_der = _check_key_agreement_algorithm(agreement["key_encryption_algorithm"])
        ephemeral = _originator_key(agreement["originator"])
        ukm = agreement["ukm"].native
        kek = _kek(key.exchange(ec.ECDH(), ephemeral), wrap_der, ukm)
        for encrypted in agreement["recipient_encrypted_keys"]:
            try:
                cek = aes_key_unwrap(kek, encrypted["encrypted_key"].native)
            except InvalidUnwrap:
                continue
            if len(cek) != CEK_LENGTH:
                raise MalformedMessage(Reason.BAD_STRUCTURE, "the content key is not 256 bits")
            return cek
    raise DecryptionFailed(Reason.NOT_FOR_THIS_KEY, "the envelope is not addressed to this key")


def _check_key_agreement_algorithm(algorithm: cms.KeyEncryptionAlgorithm) -> bytes:
    """Refuse any KDF or wrap but the profile's; return the wrap AlgorithmIdentifier as sent."""
    if algorithm["algorithm"].dotted != schema.ID_DH_SINGLE_PASS_STD_DH_SHA384_KDF:
        raise UnsupportedAlgorithm(
            Reason.UNSUPPORTED_KDF,
            f"key agreement {algorithm['algorithm'].dotted} is not "
            "dhSinglePass-stdDH-sha384kdf-scheme (ECDH with the SHA-384 X9.63 KDF)",
        )
    wrap = algorithm["parameters"].parse(cms.KeyEncryptionAlgorithm)
    if wrap["algorithm"].dotted != schema.ID_AES192_WRAP or wrap["parameters"].native is not None:
        raise UnsupportedAlgorithm(
            Reason.UNSUPPORTED_KEY_WRAP,
            f"key wrap {wrap['algorithm'].dotted} is not id-aes192-wrap",
        )
    wrap_der: bytes = wrap.dump()
    return wrap_der


def _originator_key(originator: cms.OriginatorIdentifierOrKey) -> ec.EllipticCurvePublicKey:
    if originator.name != "originator_key":
        raise MalformedMessage(
            Reason.BAD_STRUCTURE, "the originator is not an ephemeral public key"
        )
    public_key_info = originator.chosen
    algorithm = public_key_info["algorithm"]
    if algorithm["algorithm"].native != "ec":
        raise UnsupportedAlgorithm(Reason.UNSUPPORTED_CURVE, "the originator key is not an EC key")
    parameters = algorithm["parameters"]
    if parameters.native is not None and (
        parameters.name != "named" or parameters.chosen.dotted != schema.ID_SECP384R1
    ):
        raise UnsupportedAlgorithm(Reason.UNSUPPORTED_CURVE, "the originator key is not on P-384")
    point = public_key_info["public_key"].contents[1:]  # drop the BIT STRING's unused-bits octet
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP384R1(), point)
    except ValueError:
        raise MalformedMessage(
            Reason.BAD_STRUCTURE, "the originator key is not a point on P-384"
        ) from None
