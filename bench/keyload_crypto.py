"""Key-load crypto: EKLF build/open rates for 5 and 25 keys beside the crypto floor of one EKLF.

Run: ``python -m bench keyload_crypto``. The floor is what serving one 5-key request costs in
primitives alone (verify the VKLOADREQ, ephemeral key, ECDH, X9.63 KDF, AES key wrap, AES-256-CBC
of the KeyLoadFile, sign the EKLF); `crypto_floor_per_second()` is reused by the KMC benchmark.
The full-path figures use the test PKI of ``factories.pki``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from factories.example import key_load_file_with
from factories.pki import make_pki
from key_load_protocol import KeyLoadFile, build_eklf, open_eklf
from key_load_protocol.codec import encode_key_load_file

_SECONDS = 0.5
_ECDSA = ec.ECDSA(hashes.SHA384(), deterministic_signing=True)


def floor_operations(keys: int = 5) -> dict[str, Callable[[], object]]:
    """Each primitive one EKLF for `keys` keys needs, as a ready-to-time callable."""
    sm_key = ec.generate_private_key(ec.SECP384R1())
    kmc_key = ec.generate_private_key(ec.SECP384R1())
    sm_public = sm_key.public_key()
    request = os.urandom(900)
    request_signature = sm_key.sign(request, _ECDSA)
    ephemeral = ec.generate_private_key(ec.SECP384R1())
    shared_secret = ephemeral.exchange(ec.ECDH(), sm_public)
    kek, cek, iv = os.urandom(24), os.urandom(32), os.urandom(16)
    plaintext = encode_key_load_file(key_load_file_with(keys))
    padded = plaintext + bytes(16 - len(plaintext) % 16)
    envelope = os.urandom(len(plaintext) + 300)

    def encrypt_content() -> bytes:
        encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
        return encryptor.update(padded) + encryptor.finalize()

    return {
        "ECDSA P-384 verify (VKLOADREQ)": lambda: sm_public.verify(
            request_signature, request, ec.ECDSA(hashes.SHA384())
        ),
        "P-384 ephemeral key generation": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ECDH P-384": lambda: ephemeral.exchange(ec.ECDH(), sm_public),
        "X9.63 KDF SHA-384": lambda: X963KDF(hashes.SHA384(), 24, b"shared-info").derive(
            shared_secret
        ),
        "AES-192 key wrap of the CEK": lambda: aes_key_wrap(kek, cek),
        f"AES-256-CBC of the KeyLoadFile ({len(plaintext)} B)": encrypt_content,
        "ECDSA P-384 sign (EKLF, deterministic)": lambda: kmc_key.sign(envelope, _ECDSA),
    }


def _seconds_per_call(operation: Callable[[], object]) -> float:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < _SECONDS:
        for _ in range(20):
            operation()
        count += 20
    return elapsed / count


def crypto_floor_per_second(keys: int = 5) -> float:
    """EKLFs per second one core could serve if only the cryptographic primitives cost time."""
    return 1 / sum(_seconds_per_call(op) for op in floor_operations(keys).values())


def _report(label: str, rate: float) -> None:
    print(f"  {label:<56} {rate:>10,.0f} /s", flush=True)


def main() -> None:
    print("crypto floor of one 5-key EKLF (one core):")
    total = 0.0
    for label, operation in floor_operations(5).items():
        seconds = _seconds_per_call(operation)
        total += seconds
        _report(label, 1 / seconds)
    _report("floor: all of the above, per EKLF", 1 / total)
    pki = make_pki()
    for keys in (5, 25):
        klf = key_load_file_with(keys)

        def build(klf: KeyLoadFile = klf) -> bytes:
            return build_eklf(
                klf,
                sm_certificate=pki.sm.certificate,
                signer_key=pki.signer.key,
                signer_certificate=pki.signer.certificate,
            )

        der = build()
        print(f"{keys}-key EKLF, {len(der):,} bytes:")
        _report("build_eklf", 1 / _seconds_per_call(build))
        _report(
            "open_eklf (verify, chain, decrypt, parse)",
            1
            / _seconds_per_call(
                lambda der=der: open_eklf(
                    der, trusted_root=pki.root.certificate, sm_private_key=pki.sm.key
                )
            ),
        )
