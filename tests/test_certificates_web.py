"""Certificate downloads and the OpenSSL commands the pages show: the commands are read off the
page and run on the downloaded files, so what a person copies is what is tested."""

from __future__ import annotations

import html
import io
import re
import shlex
import shutil
import subprocess
import zipfile

import pytest

from factories.registry import new_device
from tests.conftest import login, require

FILES = {
    "root": "kmc-root.pem",
    "issuing": "kmc-sm-issuing-ca.pem",
    "keyload": "kmc-keyload-signer.pem",
    "audit": "kmc-audit-signer.pem",
    "chain": "kmc-chain.pem",
}


@pytest.fixture(autouse=True)
def _openssl():
    require(shutil.which("openssl") is not None, "the openssl command is not installed")


def shown_command(page: str, element_id: str, **names: str) -> list[str]:
    """The command in `<pre id=element_id>`, continuation lines joined, placeholders replaced."""
    found = re.search(rf'<pre id="{element_id}"><code>(.*?)</code></pre>', page, re.S)
    assert found, f"no command {element_id} on the page"
    command = html.unescape(found.group(1)).replace("\\\n", " ")
    for placeholder, value in names.items():
        command = command.replace(placeholder, value)
    return shlex.split(command)


def openssl(command: list[str], folder) -> subprocess.CompletedProcess[str]:
    assert command[0] == "openssl"
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=60)


def download_kmc_certificates(client, folder) -> str:
    page = client.get("/certificates").get_data(as_text=True)
    for name, file in FILES.items():
        answer = client.get(f"/certificates/{name}.pem")
        assert (
            answer.status_code == 200
            and f"filename={file}" in answer.headers["Content-Disposition"]
        )
        assert f'href="/certificates/{name}.pem"' in page
        (folder / file).write_bytes(answer.data)
    return page


@pytest.mark.parametrize("username", ["auditor1", "maker1", "operator1"])
def test_each_role_downloads_the_kmc_certificates_and_the_shown_command_verifies_them(
    client, tmp_path, username
):
    login(client, username)
    page = download_kmc_certificates(client, tmp_path)
    checked = openssl(shown_command(page, "verify-kmc"), tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count(": OK") == 3
    chain = (tmp_path / FILES["chain"]).read_bytes()
    assert chain.count(b"BEGIN CERTIFICATE") == 2


def test_the_sm_certificate_comes_with_its_chain_and_verifies_as_the_sm_page_says(
    app, client, tmp_path
):
    new_device(app, "4242")
    login(client, "operator1")
    download_kmc_certificates(client, tmp_path)
    page = client.get("/registry/sms/4242").get_data(as_text=True)
    with_chain = client.get("/registry/sms/4242/certificate.pem")
    assert with_chain.data.count(b"BEGIN CERTIFICATE") == 2
    (tmp_path / "sm-4242.pem").write_bytes(with_chain.data)
    (tmp_path / "kmc-root.pem").write_bytes(client.get("/certificates/root.pem").data)
    checked = openssl(shown_command(page, "verify-sm"), tmp_path)
    assert checked.returncode == 0 and "sm-4242.pem: OK" in checked.stdout, checked.stderr
    leaf = client.get("/registry/sms/4242/certificate.pem?leaf=1")
    assert leaf.data.count(b"BEGIN CERTIFICATE") == 1
    (tmp_path / "leaf.pem").write_bytes(leaf.data)
    alone = openssl(["openssl", "verify", "-CAfile", "kmc-root.pem", "leaf.pem"], tmp_path)
    assert alone.returncode != 0  # the leaf alone does not reach the root: hence the chain
    general = client.get("/certificates").get_data(as_text=True)
    checked = openssl(shown_command(general, "verify-sm", SMID="4242"), tmp_path)
    assert checked.returncode == 0, checked.stderr


def test_an_auditor_verifies_a_signed_export_with_the_command_and_files_from_the_ui(
    app, client, tmp_path
):
    new_device(app, "4242")
    login(client, "auditor1")
    page = download_kmc_certificates(client, tmp_path)
    archive = zipfile.ZipFile(io.BytesIO(client.get("/registry/export.csv.zip").data))
    name = next(n for n in archive.namelist() if n.endswith(".csv"))
    archive.extractall(tmp_path)
    command = shown_command(page, "verify-export", FILE=name)
    checked = openssl(command, tmp_path)
    assert checked.returncode == 0 and "Verification successful" in checked.stderr, checked.stderr
    (tmp_path / name).write_bytes((tmp_path / name).read_bytes().replace(b"4242", b"4243"))
    assert openssl(command, tmp_path).returncode != 0


def test_the_certificate_pages_need_a_login_and_know_only_their_names(client):
    assert client.get("/certificates/root.pem").status_code in (302, 401)
    login(client, "auditor1")
    assert client.get("/certificates/master.pem").status_code == 404
    assert client.get("/certificates/..%2Froot.pem").status_code == 404
