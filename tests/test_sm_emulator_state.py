"""SM emulator identity and state: init, registration request, trust, certificate, request, sealing."""

from __future__ import annotations

import datetime as dt
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from factories.emulator import ID_MAN, NOW, SMID, MiniKmc, loaded_key, ready_sm
from factories.pki import make_pki, make_sm
from key_load_protocol import parse_request
from sm_emulator.cli import main
from sm_emulator.errors import CertificateRefused, StateError
from sm_emulator.module import SecurityModule


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_init_writes_a_0600_p384_key_and_a_csr_the_kmc_can_read(tmp_path: Path) -> None:
    code, out = _cli(
        "init",
        "--state",
        str(tmp_path / "sm"),
        "--id-man",
        "1a2b",
        "--smid",
        SMID,
        "--out",
        str(tmp_path / "sm.csr"),
    )
    assert code == 0, out
    key_file = tmp_path / "sm" / "sm.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "sm").stat().st_mode) == 0o700
    csr = x509.load_pem_x509_csr((tmp_path / "sm.csr").read_bytes())
    assert csr.is_signature_valid
    assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(csr.public_key().curve, ec.SECP384R1)  # type: ignore[union-attr]
    assert csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == SMID
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "1A2B"
    # OpenSSL, an independent peer, verifies the request's self-signature.
    checked = subprocess.run(
        ["/usr/bin/openssl", "req", "-in", str(tmp_path / "sm.csr"), "-verify", "-noout"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0 and "verify OK" in checked.stdout + checked.stderr


def test_init_twice_is_refused_and_keeps_the_key(tmp_path: Path) -> None:
    args = (
        "init",
        "--state",
        str(tmp_path / "sm"),
        "--id-man",
        ID_MAN,
        "--smid",
        SMID,
        "--out",
        str(tmp_path / "a.csr"),
    )
    assert _cli(*args)[0] == 0
    before = (tmp_path / "sm" / "sm.key").read_bytes()
    code, out = _cli(*args)
    assert code == 1
    assert out.strip().startswith("sm-emulator: already_initialised:")
    assert (tmp_path / "sm" / "sm.key").read_bytes() == before


@pytest.mark.parametrize(
    ("smid", "id_man", "reason"),
    [
        ("0123", ID_MAN, "invalid_smid"),
        ("12x", ID_MAN, "invalid_smid"),
        (SMID, "XYZ1", "invalid_id_man"),
    ],
)
def test_init_refuses_identifiers_the_registry_would_refuse(
    tmp_path: Path, smid: str, id_man: str, reason: str
) -> None:
    code, out = _cli(
        "init",
        "--state",
        str(tmp_path / "sm"),
        "--id-man",
        id_man,
        "--smid",
        smid,
        "--out",
        str(tmp_path / "x.csr"),
    )
    assert code == 1 and f": {reason}:" in out
    assert not (tmp_path / "sm" / "sm.key").exists()


def test_commands_on_a_missing_state_folder_say_so(tmp_path: Path) -> None:
    code, out = _cli("keys", "--state", str(tmp_path / "nothing"))
    assert code == 1 and out.startswith("sm-emulator: not_initialised:")


def test_trust_refuses_a_non_ca_and_a_second_different_root(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm, _ = SecurityModule.initialise(tmp_path / "sm", smid=SMID, id_man=ID_MAN, clock=lambda: NOW)
    with pytest.raises(CertificateRefused) as refused:
        sm.trust(kmc.pki.signer.certificate.public_bytes(serialization.Encoding.PEM))
    assert refused.value.reason == "not_a_ca"
    sm.trust(kmc.root_pem())
    sm.trust(kmc.root_pem())  # the same root again is harmless
    with pytest.raises(StateError) as second:
        sm.trust(MiniKmc().root_pem())
    assert second.value.reason == "root_already_pinned"


def test_install_cert_needs_a_pinned_root(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm, _ = SecurityModule.initialise(tmp_path / "sm", smid=SMID, id_man=ID_MAN, clock=lambda: NOW)
    with pytest.raises(StateError) as refused:
        sm.install_certificate(kmc.certify(sm))
    assert refused.value.reason == "no_root"


@pytest.mark.parametrize("case", ["other_key", "other_smid", "other_ca", "expired"])
def test_install_cert_refuses_certificates_that_do_not_fit(tmp_path: Path, case: str) -> None:
    kmc = MiniKmc()
    sm, _ = SecurityModule.initialise(tmp_path / "sm", smid=SMID, id_man=ID_MAN, clock=lambda: NOW)
    sm.trust(kmc.root_pem())
    if case == "other_key":
        party = make_sm(kmc.pki.root, smid=SMID)
    elif case == "other_smid":
        party = make_sm(kmc.pki.root, smid="999", key=sm.private_key)
    elif case == "other_ca":
        party = make_sm(make_pki().root, smid=SMID, key=sm.private_key)
    else:
        party = make_sm(kmc.pki.root, smid=SMID, key=sm.private_key)
        sm.clock = lambda: dt.datetime(2041, 1, 1, tzinfo=dt.UTC)
    expected = {
        "other_key": "not_my_key",
        "other_smid": "smid_mismatch",
        "other_ca": "untrusted_chain",
        "expired": "untrusted_chain",
    }[case]
    with pytest.raises(CertificateRefused) as refused:
        sm.install_certificate(party.certificate.public_bytes(serialization.Encoding.PEM))
    assert refused.value.reason == expected
    assert sm.status()["certificate_serial"] is None


def test_install_cert_accepts_a_bundle_with_the_issuing_ca(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm, _ = SecurityModule.initialise(tmp_path / "sm", smid=SMID, id_man=ID_MAN, clock=lambda: NOW)
    sm.trust(kmc.root_pem())
    issuing = kmc.pki.intermediate
    party = make_sm(issuing, smid=SMID, key=sm.private_key)
    leaf_only = party.certificate.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(CertificateRefused):
        sm.install_certificate(leaf_only)
    installed = sm.install_certificate(
        leaf_only + issuing.certificate.public_bytes(serialization.Encoding.PEM)
    )
    assert installed.intermediates == (issuing.certificate,)


def test_request_needs_a_certificate(tmp_path: Path) -> None:
    sm, _ = SecurityModule.initialise(tmp_path / "sm", smid=SMID, id_man=ID_MAN, clock=lambda: NOW)
    with pytest.raises(StateError) as refused:
        sm.request(None)
    assert refused.value.reason == "no_certificate"


def test_request_is_signed_by_the_sm_with_a_fresh_nonce_each_time(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm = ready_sm(tmp_path / "sm", kmc)
    first, second = parse_request(sm.request(None)), parse_request(sm.request(None))
    first.verify(kmc.sm_certificates[SMID].certificate)
    assert first.request.smid == SMID and first.request.keys is None
    assert first.request.nonce != second.request.nonce
    assert sm.status()["outstanding_requests"] == 2


def test_request_cli_names_keys_or_all_but_not_both(tmp_path: Path) -> None:
    kmc = MiniKmc()
    ready_sm(tmp_path / "sm", kmc).close()
    out = str(tmp_path / "r.der")
    code, text = _cli(
        "request", "--state", str(tmp_path / "sm"), "--all", "--key", "123457:1:2", "--out", out
    )
    assert code == 2 and "usage" in text
    code, text = _cli(
        "request", "--state", str(tmp_path / "sm"), "--key", "123457:x:2", "--out", out
    )
    assert code == 1 and "invalid_key" in text
    code, text = _cli(
        "request", "--state", str(tmp_path / "sm"), "--key", "123457:1:2", "--out", out
    )
    assert code == 0, text
    assert [str(k) for k in parse_request(Path(out).read_bytes()).request.keys or ()] == [
        "SGC 123457 KRN 1 KT 2"
    ]


def test_key_values_are_sealed_at_rest(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm = ready_sm(tmp_path / "sm", kmc)
    secret = bytes(range(100, 120))
    sm.load(kmc.answer(sm.request(None), (loaded_key(key_value=secret),)))
    sm.close()
    raw = b"".join(
        p.read_bytes() for p in (tmp_path / "sm").iterdir() if p.name.startswith("state.db")
    )
    assert secret not in raw and secret.hex().encode() not in raw
    # Moving a sealed key to another row's identity does not open: the seal binds the identity.
    with sqlite3.connect(tmp_path / "sm" / "state.db") as db:
        db.execute("UPDATE key_register SET krn = 2")
    reopened = SecurityModule(tmp_path / "sm", clock=lambda: NOW)
    with reopened.store.snapshot() as db, pytest.raises(StateError) as refused:
        reopened.open_key(db, loaded_key(krn=2).identity)
    assert refused.value.reason == "sealed_key_invalid"
