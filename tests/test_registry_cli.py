"""`kmc manufacturer` and `kmc sm` as an operator runs them, with OpenSSL checking what the KMC signs."""

from __future__ import annotations

import json
import re
import subprocess
import zipfile

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from factories.csr import make_csr, write_csr
from key_load_protocol import ID_KP_KMC_AUDIT_SIGNING
from kmc.audit.models import AuditEntry
from kmc.database import db
from sm_registry.certificates import ID_KMC_SM_PROFILE, SmProfile
from sm_registry.models import Manufacturer, SecurityModule, SmStateEvent
from tests.conftest import run_kmc
from tests.test_registry_csr import DATA, REF

OPENSSL = "/usr/bin/openssl"


@pytest.fixture(params=["software", "pkcs11"])
def keystore(request: pytest.FixtureRequest) -> str:
    """Over both key stores: with pkcs11 the token signs certificates, exports and checkpoints."""
    return str(request.param)


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=60)


def verify_export(content, signature, root, audit_signer):
    """The check docs/registry.md documents: signed by the pinned audit signer, under the root.

    `-purpose any` because OpenSSL knows no private EKU (the audit signer's is auditSigning);
    `-nointern -certfile` because any certificate under the root (an SM's) could sign otherwise.
    """
    return openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-content", str(content),
        "-in", str(signature), "-CAfile", str(root),
        "-purpose", "any", "-nointern", "-certfile", str(audit_signer), "-out", "/dev/null",
    )  # fmt: skip


def registered(kmc, tmp_path, smid="1001", kind="certified", *extra):
    args = ["sm", "register", "--csr", str(write_csr(tmp_path, smid)), "--kind", kind]
    if kind == "certified":
        args += ["--certification", REF]
    result = kmc(*args, "--as", "maker1", *extra)
    assert result.exit_code == 0, result.output
    return result


def counts(app):
    with app.app_context():
        return tuple(
            db.session.scalar(select(func.count()).select_from(t))
            for t in (SecurityModule, SmStateEvent, AuditEntry)
        )


def test_manufacturer_add_and_list(kmc):
    result = kmc(
        "manufacturer", "add", "--id-man", "9f0e", "--name", "Nine", "--contact", "ops@nine"
    )
    assert result.exit_code == 0, result.output
    assert "manufacturer 9F0E (Nine) created" in result.output
    listed = json.loads(kmc("manufacturer", "list", "--json").output)
    assert {"id_man": "9F0E", "name": "Nine", "contact": "ops@nine"} in listed
    assert [m["id_man"] for m in listed] == ["1A2B", "3C4D", "9F0E"]


def test_manufacturer_add_refuses_a_duplicate_and_a_bad_id_man(app, kmc):
    result = kmc("manufacturer", "add", "--id-man", "1A2B", "--name", "Again")
    assert result.exit_code == 1
    assert result.output.strip() == "kmc: duplicate_id_man: manufacturer 1A2B already exists"
    result = kmc("manufacturer", "add", "--id-man", "12345", "--name", "Long")
    assert result.exit_code == 1 and "ID_man must be 4 hexadecimal digits" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Manufacturer)) == 2


def test_only_admins_add_manufacturers(kmc):
    result = kmc("manufacturer", "add", "--id-man", "9F0E", "--name", "N", "--as", "operator1")
    assert result.exit_code == 1 and "may not do this" in result.output


def test_register_with_openssl_csr_as_admin_for_a_manufacturer(kmc):
    result = kmc(
        "sm", "register", "--csr", str(DATA / "sm-p384.csr.der"), "--kind", "certified",
        "--certification", REF, "--as-manufacturer", "1A2B", "--as", "admin1", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert (record["smid"], record["id_man"], record["state"], record["registered_by"]) == (
        "600727000001",
        "1A2B",
        "pending",
        "admin1",
    )
    assert record["certification"] == {
        "model": "SM-9000",
        "firmware": "smfw",
        "version": "2.1.0",
        "number": "STS-CERT-0042",
    }


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("rsa.csr.pem", "RSA keys are refused"),
        ("p256.csr.pem", "curve secp256r1 is refused"),
        ("bad-signature.csr.der", "the CSR signature does not verify"),
        ("truncated.csr.der", "not a well-formed PKCS#10"),
        ("certificate-not-csr.pem", "PEM block is 'CERTIFICATE'"),
    ],
)
def test_register_refuses_bad_csrs_with_one_line(app, kmc, name, message):
    before = counts(app)
    result = kmc(
        "sm", "register", "--csr", str(DATA / name), "--kind", "virtual", "--as", "maker1"
    )  # fmt: skip
    assert result.exit_code == 1
    assert re.match(r"kmc: [a-z0-9_]+: ", result.output) and message in result.output
    assert result.output.count("\n") == 1
    assert counts(app) == before


def test_bad_certification_reference_is_refused(kmc, tmp_path):
    result = kmc(
        "sm", "register", "--csr", str(write_csr(tmp_path, "5")), "--kind", "certified",
        "--certification", "model=A", "--as", "maker1",
    )  # fmt: skip
    assert result.exit_code == 1 and "lacks firmware, version, number" in result.output


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_live_kmc_refuses_virtual_sm_from_the_cli(app, kmc, tmp_path):
    before = counts(app)
    result = kmc(
        "sm", "register", "--csr", str(write_csr(tmp_path, "5")), "--kind", "virtual", "--as", "maker1"
    )  # fmt: skip
    assert result.exit_code == 1
    assert "STS 600-10-1 §4.5" in result.output and "virtual" in result.output
    assert counts(app) == before


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_live_kmc_demands_an_actor(kmc, tmp_path):
    result = kmc("sm", "register", "--csr", str(write_csr(tmp_path, "5")), "--kind", "virtual")
    assert result.exit_code == 1 and "--as USERNAME" in result.output


def test_lifecycle_from_the_cli(kmc, tmp_path):
    registered(kmc, tmp_path)
    for action, state in [
        ("approve", "active"),
        ("suspend", "suspended"),
        ("resume", "active"),
        ("revoke", "revoked"),
    ]:
        result = kmc("sm", action, "1001", "--reason", f"{action} it", "--as", "operator1")
        assert result.exit_code == 0, result.output
        assert result.output.strip() == f"SM 1001 is now {state}"
    history = json.loads(kmc("sm", "list", "--json").output)[0]["history"]
    assert [(h["to"], h["actor"], h["reason"]) for h in history] == [
        ("pending", "maker1", ""),
        ("active", "operator1", "approve it"),
        ("suspended", "operator1", "suspend it"),
        ("active", "operator1", "resume it"),
        ("revoked", "operator1", "revoke it"),
    ]


def test_state_change_of_unknown_smid_fails_cleanly(kmc):
    result = kmc("sm", "approve", "4242", "--reason", "x", "--as", "operator1")
    assert result.exit_code == 1
    assert result.output.strip() == "kmc: unknown_sm: no SM with SMID 4242"


def test_manufacturer_cannot_touch_anothers_sm_from_the_cli(app, kmc, tmp_path):
    registered(kmc, tmp_path)
    before = counts(app)
    result = kmc("sm", "revoke", "1001", "--reason", "mine now", "--as", "maker2")
    assert result.exit_code == 1 and "no SM with SMID 1001" in result.output
    assert counts(app) == before


def test_sm_list_filters(kmc, tmp_path):
    registered(kmc, tmp_path, "1001")
    registered(kmc, tmp_path, "1002")
    kmc("sm", "approve", "1002", "--reason", "ok", "--as", "operator1")
    active = json.loads(kmc("sm", "list", "--state", "active", "--json").output)
    assert [r["smid"] for r in active] == ["1002"]
    text = kmc("sm", "list", "--id-man", "1A2B").output
    assert "1001" in text and "1002" in text and "pending" in text


def test_issued_certificate_verifies_with_openssl_and_carries_the_profile(kmc, instance, tmp_path):
    registered(kmc, tmp_path)
    assert kmc("sm", "approve", "1001", "--reason", "checked", "--as", "operator1").exit_code == 0
    root, cert, chain = tmp_path / "root.pem", tmp_path / "sm.crt", tmp_path / "chain.pem"
    assert kmc("ca", "root", "--out", str(root)).exit_code == 0
    assert kmc("sm", "cert", "1001", "--out", str(cert)).exit_code == 0
    issuing = instance.folder / "pki" / "issuing.pem"
    verified = openssl("verify", "-CAfile", str(root), "-untrusted", str(issuing), str(cert))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.strip() == f"{cert}: OK"
    assert openssl("verify", "-CAfile", str(root), str(cert)).returncode != 0

    assert kmc("sm", "cert", "1001", "--out", str(chain), "--with-chain").exit_code == 0
    assert (
        openssl("verify", "-CAfile", str(root), "-untrusted", str(chain), str(cert)).returncode == 0
    )

    text = openssl("x509", "-in", str(cert), "-noout", "-text", "-nameopt", "RFC2253").stdout
    assert "serialNumber=1001" in text and "OU=1A2B" in text
    assert "Digital Signature, Key Agreement" in text
    assert "NIST CURVE: P-384" in text and "ecdsa-with-SHA384" in text
    assert "X509v3 Subject Key Identifier" in text and "CA:FALSE" in text
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    assert certificate.extensions.get_extension_for_oid(ID_KMC_SM_PROFILE).critical is False
    profile = SmProfile.from_certificate(certificate)
    assert profile.kind == "certified" and str(profile.certification) == REF


def test_certificate_binds_the_registered_key(kmc, tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "k.der"
    path.write_bytes(make_csr("31337", key=key, der=True))
    kmc("sm", "register", "--csr", str(path), "--kind", "virtual", "--as", "maker1")
    kmc("sm", "approve", "31337", "--reason", "ok", "--as", "operator2")
    kmc("sm", "cert", "31337", "--out", str(tmp_path / "c.pem"))
    certificate = x509.load_pem_x509_certificate((tmp_path / "c.pem").read_bytes())
    assert certificate.public_key() == key.public_key()
    assert SmProfile.from_certificate(certificate) == SmProfile("virtual", None)


def test_cert_of_a_pending_sm_is_refused(kmc, tmp_path):
    registered(kmc, tmp_path)
    result = kmc("sm", "cert", "1001", "--out", str(tmp_path / "c.pem"))
    assert result.exit_code == 1 and "no certificate yet (state pending)" in result.output
    assert not (tmp_path / "c.pem").exists()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_is_signed_and_openssl_verifies_it(kmc, tmp_path, fmt):
    registered(kmc, tmp_path)
    kmc("sm", "approve", "1001", "--reason", "ok", "--as", "operator1")
    out, root, signer = tmp_path / f"registry.{fmt}", tmp_path / "root.pem", tmp_path / "audit.pem"
    kmc("ca", "root", "--out", str(root))
    assert kmc("ca", "audit-signer", "--out", str(signer)).exit_code == 0
    result = kmc("sm", "export", "--format", fmt, "--out", str(out), "--as", "auditor1")
    assert result.exit_code == 0, result.output
    signature = tmp_path / f"registry.{fmt}.sig"
    verified = verify_export(out, signature, root, signer)
    assert verified.returncode == 0, verified.stderr
    assert "Verification successful" in verified.stderr
    content = out.read_text()
    assert "kmc_mode" in content and "1001" in content and "auditor1" in content
    out.write_bytes(out.read_bytes().replace(b"1A2B", b"3C4D"))
    assert verify_export(out, signature, root, signer).returncode != 0


def test_audit_signer_certificate_carries_the_audit_signing_purpose(kmc, tmp_path):
    path = tmp_path / "audit.pem"
    assert kmc("ca", "audit-signer", "--out", str(path)).exit_code == 0
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    purposes = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(purposes) == [x509.ObjectIdentifier(ID_KP_KMC_AUDIT_SIGNING)]
    assert certificate.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_an_export_signed_with_an_sm_key_fails_the_documented_check(kmc, instance, tmp_path):
    # SM 31337's certificate chains to the root with digitalSignature, like the audit signer's.
    key = ec.generate_private_key(ec.SECP384R1())
    (tmp_path / "sm.csr").write_bytes(make_csr("31337", key=key))
    kmc("sm", "register", "--csr", str(tmp_path / "sm.csr"), "--kind", "virtual", "--as", "maker1")
    kmc("sm", "approve", "31337", "--reason", "ok", "--as", "operator1")
    sm_cert, sm_key = tmp_path / "sm.crt", tmp_path / "sm.key"
    kmc("sm", "cert", "31337", "--out", str(sm_cert))
    sm_key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    out, root, signer = tmp_path / "registry.csv", tmp_path / "root.pem", tmp_path / "audit.pem"
    kmc("ca", "root", "--out", str(root))
    kmc("ca", "audit-signer", "--out", str(signer))
    kmc("sm", "export", "--format", "csv", "--out", str(out), "--as", "auditor1")
    out.write_bytes(out.read_bytes().replace(b"maker1", b"mallory"))
    forged = tmp_path / "registry.csv.sig"
    signed = openssl(
        "cms", "-sign", "-binary", "-md", "sha384", "-signer", str(sm_cert), "-inkey", str(sm_key),
        "-certfile", str(instance.folder / "pki" / "issuing.pem"), "-outform", "DER", "-in", str(out), "-out", str(forged),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    unpinned = openssl(
        "cms", "-verify", "-binary", "-inform", "DER", "-content", str(out), "-in", str(forged),
        "-CAfile", str(root), "-out", "/dev/null",
    )  # fmt: skip
    assert unpinned.returncode == 0, "without pinning the signer, an SM's signature passes"
    refused = verify_export(out, forged, root, signer)
    assert refused.returncode != 0
    assert "signer certificate not found" in refused.stderr


def test_json_export_lists_allocations_with_history(kmc, tmp_path):
    registered(kmc, tmp_path)
    kmc("sm", "export", "--format", "json", "--out", str(tmp_path / "e.json"))
    document = json.loads((tmp_path / "e.json").read_text())
    assert (document["format"], document["version"], document["kmc_mode"]) == (
        "kmc-sm-registry-export",
        1,
        "test",
    )
    [record] = document["security_modules"]
    assert (record["id_man"], record["smid"], record["manufacturer"], record["kind"]) == (
        "1A2B",
        "1001",
        "Acme Meters",
        "certified",
    )
    assert record["history"][0]["to"] == "pending"


def test_csv_export_states_the_mode_and_filters(kmc, tmp_path):
    registered(kmc, tmp_path, "1001")
    registered(kmc, tmp_path, "1002")
    kmc("sm", "export", "--format", "csv", "--out", str(tmp_path / "e.csv"), "--smid", "1002")
    lines = (tmp_path / "e.csv").read_text().splitlines()
    assert lines[0].startswith("# format=kmc-sm-registry-export; version=1;")
    assert "kmc_mode=test" in lines[0] and 'filters={"smid":"1002"}' in lines[0]
    assert lines[1].startswith("smid,id_man,manufacturer,kind,")
    assert [line.split(",")[0] for line in lines[2:]] == ["1002"]


def test_manufacturer_export_holds_only_its_own_sms(kmc, tmp_path):
    registered(kmc, tmp_path, "1001")
    other = tmp_path / "o.pem"
    other.write_bytes(make_csr("2002", ou="3C4D"))
    kmc("sm", "register", "--csr", str(other), "--kind", "virtual", "--as", "maker2")
    kmc("sm", "export", "--format", "json", "--out", str(tmp_path / "e.json"), "--as", "maker2")
    document = json.loads((tmp_path / "e.json").read_text())
    assert [r["smid"] for r in document["security_modules"]] == ["2002"]


def _bulk_folder(tmp_path):
    folder = tmp_path / "csrs"
    folder.mkdir()
    shared_key = ec.generate_private_key(ec.SECP384R1())
    for smid in ("5001", "5002", "5003"):
        write_csr(folder, smid)
    (folder / "5004.pem").write_bytes(make_csr("5004", key=shared_key))
    (folder / "5005.pem").write_bytes(make_csr("5005", key=shared_key))
    (folder / "junk.pem").write_bytes(b"not a csr")
    (folder / "other.pem").write_bytes(make_csr("5006", ou="3C4D"))
    return folder


def _check_bulk(app, result):
    assert result.exit_code == 1  # some items were refused
    report = json.loads(result.stdout)
    verdicts = {i["name"]: (i["result"], i["reason"]) for i in report["items"]}
    assert verdicts == {
        "5001.pem": ("accepted", None),
        "5002.pem": ("accepted", None),
        "5003.pem": ("accepted", None),
        "5004.pem": ("accepted", None),
        "5005.pem": ("refused", "duplicate_public_key"),
        "junk.pem": ("refused", "csr_malformed"),
        "other.pem": ("refused", "id_man_mismatch"),
    }
    assert (report["accepted"], report["refused"]) == (4, 3)
    with app.app_context():
        assert sorted(db.session.scalars(select(SecurityModule.smid))) == [
            "5001",
            "5002",
            "5003",
            "5004",
        ]


def test_bulk_from_a_folder_gives_each_item_a_verdict(app, kmc, tmp_path):
    folder = _bulk_folder(tmp_path)
    result = kmc(
        "sm", "register-bulk", str(folder), "--kind", "virtual", "--as", "maker1", "--json"
    )
    _check_bulk(app, result)


def test_bulk_from_a_zip_with_a_summary(app, kmc, tmp_path):
    folder = _bulk_folder(tmp_path)
    archive = tmp_path / "csrs.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, file.name)
    _check_bulk(
        app,
        kmc("sm", "register-bulk", str(archive), "--kind", "virtual", "--as", "maker1", "--json"),
    )
    text = kmc("sm", "register-bulk", str(archive), "--kind", "virtual", "--as", "maker1")
    assert "0 accepted, 7 refused (of 7)" in text.output
    assert "refused 5001.pem: SMID 5001 is already registered" in text.output


def test_bulk_refuses_a_file_that_is_not_a_zip(kmc, tmp_path):
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK nope")
    result = kmc("sm", "register-bulk", str(path), "--kind", "virtual", "--as", "maker1")
    assert result.exit_code == 1 and "x.zip is not a readable zip archive" in result.output


def test_console_script_registers_and_shows_a_progress_bar(instance, tmp_path):
    folder = tmp_path / "csrs"
    folder.mkdir()
    for smid in ("7001", "7002"):
        write_csr(folder, smid)
    done = run_kmc(
        instance, "sm", "register-bulk", str(folder), "--kind", "virtual", "--as", "maker1"
    )
    assert done.returncode == 0, done.stderr
    assert "2 accepted, 0 refused (of 2)" in done.stdout
    assert "registering" in done.stderr
