"""Interoperability with the OpenSSL 3.0 command line, in both directions (subprocess, temp files).

OpenSSL verifies and decrypts what we build; what OpenSSL builds from the same parts opens in
our code; OpenSSL's SHA-1 KDF / aes256-wrap defaults are refused by our strict reader. OpenSSL
knows no private extended key usage, so it verifies EKLFs with `-purpose any` (our signer's
EKU keyLoadSigning would otherwise be "unsuitable" for S/MIME signing).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from factories.example import example_key_load_file, example_request
from factories.pki import ProtocolPki, make_pki, make_sm
from key_load_protocol import (
    ID_CT_ENHANCED_KEY_LOAD_FILE,
    ID_CT_VK_LOAD_REQUEST,
    KeyLoadFile,
    Reason,
    UnsupportedAlgorithm,
    UntrustedSigner,
    build_eklf,
    build_request,
    open_eklf,
    parse_request,
)
from key_load_protocol.codec import decode_key_load_file, encode_key_load_file, encode_request

# `openssl cms -verify` for an EKLF: any purpose, since OpenSSL cannot check ours.
VERIFY_EKLF = ("cms", "-verify", "-purpose", "any", "-inform", "DER")


@dataclass(frozen=True)
class Files:
    """The test PKI written out for the openssl command line."""

    folder: Path
    pki: ProtocolPki
    root: Path
    signer: Path
    signer_key: Path
    sm: Path
    sm_key: Path

    def write(self, name: str, data: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    folder = tmp_path_factory.mktemp("openssl")
    pki = make_pki()
    root, _ = pki.root.write(folder, "root")
    signer, signer_key = pki.signer.write(folder, "signer")
    sm, sm_key = pki.sm.write(folder, "sm")
    return Files(folder, pki, root, signer, signer_key, sm, sm_key)


def openssl(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, check=False)


def _ok(result: subprocess.CompletedProcess[bytes]) -> None:
    assert result.returncode == 0, result.stderr.decode(errors="replace")


def _our_eklf(files: Files, klf: KeyLoadFile | None = None) -> Path:
    der = build_eklf(
        klf or example_key_load_file(),
        sm_certificate=files.pki.sm.certificate,
        signer_key=files.pki.signer.key,
        signer_certificate=files.pki.signer.certificate,
    )
    return files.write("eklf.der", der)


def _openssl_envelope(files: Files, *options: str, signer: tuple[Path, Path] | None = None) -> Path:
    """The example KeyLoadFile enveloped and signed by `openssl cms` (by the KMC signer by default)."""
    signer_certificate, signer_key = signer or (files.signer, files.signer_key)
    plain = files.write("klf-plain.der", encode_key_load_file(example_key_load_file()))
    envelope = files.folder / "openssl-envelope.der"
    _ok(
        openssl(
            "cms", "-encrypt", "-binary", "-recip", files.sm, "-keyid", *options,
            "-outform", "DER", "-in", plain, "-out", envelope,
        )
    )  # fmt: skip
    signed = files.folder / "openssl-eklf.der"
    _ok(
        openssl(
            "cms", "-sign", "-binary", "-nodetach", "-md", "sha384", "-keyid",
            "-econtent_type", ID_CT_ENHANCED_KEY_LOAD_FILE,
            "-signer", signer_certificate, "-inkey", signer_key,
            "-inform", "DER", "-outform", "DER", "-in", envelope, "-out", signed,
        )
    )  # fmt: skip
    return signed


def _open(files: Files, path: Path) -> KeyLoadFile:
    return open_eklf(
        path.read_bytes(),
        trusted_root=files.pki.root.certificate,
        sm_private_key=files.pki.sm.key,
    )


def test_openssl_verifies_our_eklf_and_decrypts_its_key_load_file(files: Files) -> None:
    eklf = _our_eklf(files)
    inner, plain = files.folder / "inner.der", files.folder / "plain.der"
    _ok(openssl(*VERIFY_EKLF, "-CAfile", files.root, "-in", eklf, "-out", inner))
    _ok(
        openssl(
            "cms", "-decrypt", "-inform", "DER", "-in", inner, "-inkey", files.sm_key, "-out", plain
        )
    )
    assert plain.read_bytes() == encode_key_load_file(example_key_load_file())
    assert decode_key_load_file(plain.read_bytes()) == example_key_load_file()


def test_openssl_follows_the_intermediate_carried_in_our_eklf(files: Files) -> None:
    der = build_eklf(
        example_key_load_file(),
        sm_certificate=files.pki.sm.certificate,
        signer_key=files.pki.signer_via_intermediate.key,
        signer_certificate=files.pki.signer_via_intermediate.certificate,
        extra_certificates=[files.pki.intermediate.certificate],
    )
    eklf = files.write("eklf-intermediate.der", der)
    _ok(openssl(*VERIFY_EKLF, "-CAfile", files.root, "-in", eklf, "-out", "/dev/null"))


def test_openssl_refuses_our_eklf_against_another_root(files: Files) -> None:
    other_root, _ = make_pki().root.write(files.folder, "other-root")
    result = openssl(
        *VERIFY_EKLF, "-CAfile", other_root, "-in", _our_eklf(files), "-out", "/dev/null"
    )
    assert result.returncode != 0
    assert b"certificate verify error" in result.stderr


def test_openssl_decrypt_with_another_key_fails(files: Files) -> None:
    eklf = _our_eklf(files)
    inner = files.folder / "inner-other.der"
    _ok(openssl(*VERIFY_EKLF, "-CAfile", files.root, "-in", eklf, "-out", inner))
    _, other_key = make_pki().sm.write(files.folder, "other-sm")
    result = openssl("cms", "-decrypt", "-inform", "DER", "-in", inner, "-inkey", other_key)
    assert result.returncode != 0


def test_openssl_needs_purpose_any_for_our_eklf(files: Files) -> None:
    result = openssl(
        "cms", "-verify", "-inform", "DER", "-CAfile", files.root, "-in", _our_eklf(files),
        "-out", "/dev/null",
    )  # fmt: skip
    assert result.returncode != 0
    assert b"unsuitable certificate purpose" in result.stderr


def test_eklf_signed_by_openssl_with_an_sm_key_is_refused_by_our_code(files: Files) -> None:
    other_sm, other_sm_key = make_sm(files.pki.root, smid="60042000000002").write(
        files.folder, "other-sm"
    )
    forged = _openssl_envelope(
        files,
        "-keyopt", "ecdh_kdf_md:sha384", "-aes256", "-wrap", "aes192-wrap",
        signer=(other_sm, other_sm_key),
    )  # fmt: skip
    with pytest.raises(UntrustedSigner, match="not a KMC key-load signer") as refused:
        _open(files, forged)
    assert refused.value.reason is Reason.SIGNER_PURPOSE
    # OpenSSL cannot check a private purpose: `-purpose any` alone accepts the forgery, and
    # only pinning the signer certificate (docs/protocol.md section 11) refuses it.
    assert openssl(*VERIFY_EKLF, "-CAfile", files.root, "-in", forged).returncode == 0
    pinned = openssl(
        *VERIFY_EKLF, "-CAfile", files.root, "-nointern", "-certfile", files.signer, "-in", forged
    )
    assert pinned.returncode != 0
    assert b"signer certificate not found" in pinned.stderr
    genuine = _our_eklf(files)
    _ok(
        openssl(
            *VERIFY_EKLF, "-CAfile", files.root, "-nointern", "-certfile", files.signer,
            "-in", genuine, "-out", "/dev/null",
        )
    )  # fmt: skip


@pytest.mark.parametrize("include_certificate", [True, False])
def test_openssl_verifies_our_vkloadreq(files: Files, include_certificate: bool) -> None:
    der = build_request(
        example_request(),
        sm_private_key=files.pki.sm.key,
        sm_certificate=files.pki.sm.certificate,
        include_certificate=include_certificate,
    )
    request, content = files.write("req.der", der), files.folder / "req-content.der"
    _ok(
        openssl(
            "cms", "-verify", "-inform", "DER", "-CAfile", files.root, "-certfile", files.sm,
            "-in", request, "-out", content,
        )
    )  # fmt: skip
    assert content.read_bytes() == encode_request(example_request())


@pytest.mark.parametrize("smime_capabilities", [False, True])
def test_vkloadreq_signed_by_openssl_verifies_in_our_code(
    files: Files, smime_capabilities: bool
) -> None:
    content = files.write("req-content.der", encode_request(example_request()))
    request = files.folder / "openssl-req.der"
    _ok(
        openssl(
            "cms", "-sign", "-binary", "-nodetach", "-md", "sha384", "-keyid",
            *(() if smime_capabilities else ("-nosmimecap",)),
            "-econtent_type", ID_CT_VK_LOAD_REQUEST, "-signer", files.sm, "-inkey", files.sm_key,
            "-outform", "DER", "-in", content, "-out", request,
        )
    )  # fmt: skip
    parsed = parse_request(request.read_bytes())
    parsed.verify(files.pki.sm.certificate)
    assert parsed.request == example_request()


def test_eklf_built_by_openssl_opens_in_our_code(files: Files) -> None:
    signed = _openssl_envelope(
        files, "-keyopt", "ecdh_kdf_md:sha384", "-aes256", "-wrap", "aes192-wrap"
    )
    assert _open(files, signed) == example_key_load_file()


@pytest.mark.parametrize(
    ("options", "reason", "message"),
    [
        (("-aes256",), Reason.UNSUPPORTED_KDF, "is not dhSinglePass-stdDH-sha384kdf-scheme"),
        (
            ("-keyopt", "ecdh_kdf_md:sha384", "-aes256"),
            Reason.UNSUPPORTED_KEY_WRAP,
            "is not id-aes192-wrap",
        ),
        (
            ("-keyopt", "ecdh_kdf_md:sha384", "-aes128", "-wrap", "aes192-wrap"),
            Reason.UNSUPPORTED_CONTENT_ENCRYPTION,
            "not encrypted with AES-256-CBC",
        ),
    ],
)
def test_openssl_fallback_parameters_are_refused(
    files: Files, options: tuple[str, ...], reason: Reason, message: str
) -> None:
    signed = _openssl_envelope(files, *options)
    with pytest.raises(UnsupportedAlgorithm, match=message) as refused:
        _open(files, signed)
    assert refused.value.reason is reason
