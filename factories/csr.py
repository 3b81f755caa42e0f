"""SM registration requests for tests and benchmarks: `build_csr` with a fresh P-384 key."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from key_load_protocol.csr import build_csr


def make_csr(
    smid: str,
    ou: str | None = "1A2B",
    key: ec.EllipticCurvePrivateKey | None = None,
    der: bool = False,
) -> bytes:
    """A CSR for an SM, signed by `key` (a fresh P-384 key unless given)."""
    return build_csr(key or ec.generate_private_key(ec.SECP384R1()), smid, ou, der=der)


def write_csr(folder: Path, smid: str, **kw: object) -> Path:
    """`make_csr(smid, **kw)` written to `<folder>/<smid>.pem`, for the command line."""
    path = folder / f"{smid}.pem"
    path.write_bytes(make_csr(smid, **kw))
    return path
