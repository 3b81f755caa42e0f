"""Key stores side by side: signatures/s and 5-key EKLF/s on `software` and on `pkcs11`
(a throwaway SoftHSM2 token), with the crypto floor of one EKLF measured in the same run.

Run: ``python -m bench keystore``. An EKLF here is what the KMC does per request with its keys:
open the 5 sealed vending keys, the ECDH (on the token with pkcs11), the X9.63 KDF, the wraps,
and the signature (on the token with pkcs11). The SM certificate is the test PKI's.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bench.keyload_crypto import _report, _seconds_per_call, crypto_floor_per_second
from factories.example import key_load_file_with
from factories.pki import make_pki
from key_load_protocol import build_eklf
from kmc.keystore import KeyStore, SoftwareKeyStore, open_keystore
from kmc.pki import KmcPki

SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
_PIN = "1234"


def _softhsm_store(folder: Path) -> KeyStore | None:
    if not SOFTHSM_MODULE.exists() or shutil.which("softhsm2-util") is None:
        return None
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", "kmc-bench"]
        + ["--pin", _PIN, "--so-pin", "5678"],
        check=True,
        capture_output=True,
    )
    pin = folder / "pin"
    pin.write_text(_PIN)
    pin.chmod(0o600)
    settings = {
        "KMC_INSTANCE": folder,
        "KMC_KEYSTORE": "pkcs11",
        "KMC_PKCS11_MODULE": str(SOFTHSM_MODULE),
        "KMC_PKCS11_TOKEN": "kmc-bench",
        "KMC_PKCS11_PIN_FILE": str(pin),
    }
    return open_keystore(settings, create=True)


def _measure(name: str, store: KeyStore) -> None:
    kmc = KmcPki.create(store, "Bench KMC", "test")
    signer = kmc.keyload_signer
    test_pki = make_pki()
    klf = key_load_file_with(5)
    sealed = [(store.seal(k.key_value, b"vk:%d" % n), b"vk:%d" % n) for n, k in enumerate(klf.keys)]

    def eklf() -> bytes:
        values = [store.open(blob, identity) for blob, identity in sealed]
        keys = tuple(
            dataclasses.replace(k, key_value=v) for k, v in zip(klf.keys, values, strict=True)
        )
        return build_eklf(
            dataclasses.replace(klf, keys=keys),
            sm_certificate=test_pki.sm.certificate,
            signer_key=signer.key,
            signer_certificate=signer.certificate,
            key_agreement=store.agree,
        )

    signature = ec.ECDSA(hashes.SHA384())
    print(f"{name}:")
    _report(
        "ECDSA P-384 signature (key-load signer)",
        1 / _seconds_per_call(lambda: signer.key.sign(b"x" * 1000, signature)),
    )
    _report("5-key EKLF (open keys, ECDH, KDF, wrap, sign)", 1 / _seconds_per_call(eklf))


def main() -> None:
    _report("crypto floor: one 5-key EKLF in process (one core)", crypto_floor_per_second(5))
    with tempfile.TemporaryDirectory(prefix="bench-keystore-") as folder:
        root = Path(folder)
        (root / "software").mkdir()
        _measure("software", SoftwareKeyStore.from_instance(root / "software", create=True))
        (root / "pkcs11").mkdir()
        token = _softhsm_store(root / "pkcs11")
        if token is None:
            print("pkcs11: SoftHSM2 is not installed (apt-get install -y softhsm2)")
            return
        _measure("pkcs11 (SoftHSM2)", token)
