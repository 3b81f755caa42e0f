"""The `kmc` console script: init, users, tokens, actors, one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Instance, run_kmc


def _fresh(tmp_path: Path, mode: str = "test") -> Instance:
    folder = tmp_path / "fresh"
    return Instance(folder, f"sqlite:///{folder / 'kmc.sqlite3'}", mode, "", {})


def test_init_is_idempotent_and_shows_the_admin_password_once(tmp_path):
    fresh = _fresh(tmp_path)
    first = run_kmc(fresh, "init")
    assert first.returncode == 0, first.stderr
    assert "one-time password" in first.stdout
    second = run_kmc(fresh, "init")
    assert second.returncode == 0, second.stderr
    assert "one-time password" not in second.stdout
    users = json.loads(run_kmc(fresh, "user", "list", "--json").stdout)
    assert [u["username"] for u in users] == ["admin"]


def test_init_keeps_secrets_private(tmp_path):
    fresh = _fresh(tmp_path)
    run_kmc(fresh, "init")
    for name in ("secret_key", "master.key", "pki/root.key.sealed", "pki/keyload.key.sealed"):
        mode = stat.S_IMODE(os.stat(fresh.folder / name).st_mode)
        assert mode == 0o600, f"{name} has mode {oct(mode)}"


def test_root_certificate_export_is_a_self_signed_p384_ca(tmp_path):
    fresh = _fresh(tmp_path)
    run_kmc(fresh, "init")
    out = tmp_path / "root.pem"
    assert run_kmc(fresh, "ca", "root", "--out", str(out)).returncode == 0
    text = subprocess.run(
        ["openssl", "x509", "-in", str(out), "-noout", "-text"], capture_output=True, text=True
    ).stdout
    assert "NIST CURVE: P-384" in text and "CA:TRUE" in text
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(out), str(out)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr


def test_user_create_reads_the_password_from_stdin(kmc):
    result = kmc(
        "user",
        "create",
        "--username",
        "carol",
        "--role",
        "auditor",
        "--password-stdin",
        "--json",
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"username": "carol", "role": "auditor", "id_man": None}
    listed = json.loads(kmc("user", "list", "--json").output)
    assert {
        "username": "carol",
        "role": "auditor",
        "id_man": None,
        "active": True,
        "failed_logins": 0,
        "throttled_until": None,
    } in listed


def test_manufacturer_user_is_bound_to_an_existing_id_man(kmc):
    ok = kmc(
        "user",
        "create",
        "--username",
        "mk",
        "--role",
        "manufacturer",
        "--manufacturer",
        "1a2b",
        "--password-stdin",
        input="a long enough password\n",
    )
    assert ok.exit_code == 0, ok.output
    missing = kmc(
        "user",
        "create",
        "--username",
        "mk2",
        "--role",
        "manufacturer",
        "--manufacturer",
        "FFFF",
        "--password-stdin",
        input="a long enough password\n",
    )
    assert missing.exit_code == 1
    assert "no manufacturer with ID_man FFFF" in missing.output


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--username", "x y", "--role", "auditor"], "a long enough password\n", "usernames are"),
        (["--username", "shorty", "--role", "auditor"], "short\n", "at least 12 characters"),
        (
            ["--username", "operator1", "--role", "auditor"],
            "a long enough password\n",
            "already exists",
        ),
        (
            ["--username", "op9", "--role", "operator", "--manufacturer", "1A2B"],
            "a long enough password\n",
            "only manufacturer accounts",
        ),
    ],
)
def test_bad_user_input_is_one_line_and_non_zero(kmc, args, stdin, message):
    result = kmc("user", "create", *args, "--password-stdin", input=stdin)
    assert result.exit_code == 1
    assert message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_actor_is_recorded_from_as_or_the_system_user(app, kmc):
    from sqlalchemy import select

    from kmc.audit.models import AuditEntry
    from kmc.database import db

    kmc(
        "user",
        "create",
        "--username",
        "dave",
        "--role",
        "auditor",
        "--password-stdin",
        "--as",
        "admin1",
        input="a long enough password\n",
    )
    kmc(
        "user",
        "create",
        "--username",
        "erin",
        "--role",
        "auditor",
        "--password-stdin",
        input="a long enough password\n",
    )
    with app.app_context():
        actors = dict(
            db.session.execute(
                select(AuditEntry.object_id, AuditEntry.actor).where(
                    AuditEntry.action == "user.create"
                )
            ).all()
        )
    assert actors["dave"] == "admin1"
    assert actors["erin"].startswith("cli:")


def test_as_must_name_an_account_allowed_to_act(kmc):
    result = kmc(
        "user",
        "create",
        "--username",
        "frank",
        "--role",
        "auditor",
        "--password-stdin",
        "--as",
        "auditor1",
        input="a long enough password\n",
    )
    assert result.exit_code == 1
    assert "may not do this" in result.output


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_live_mode_requires_as(kmc):
    result = kmc(
        "user",
        "create",
        "--username",
        "gina",
        "--role",
        "auditor",
        "--password-stdin",
        input="a long enough password\n",
    )
    assert result.exit_code == 1
    assert "--as USERNAME" in result.output


def test_token_command_prints_a_working_bearer_token(kmc, client):
    result = kmc("user", "token", "--username", "maker1", "--name", "upload script", "--json")
    token = json.loads(result.output)["token"]
    response = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json == {
        "username": "maker1",
        "role": "manufacturer",
        "id_man": "1A2B",
        "active": True,
    }


def test_every_command_has_help(tmp_path):
    from kmc.cli import main

    def walk(group, path):
        for name, command in group.commands.items():
            yield [*path, name]
            if hasattr(command, "commands"):
                yield from walk(command, [*path, name])

    exe = str(Path(sys.executable).parent / "kmc")
    for path in walk(main, []):
        result = subprocess.run(
            [exe, *path, "--help"],
            capture_output=True,
            text=True,
            env={**os.environ, "KMC_INSTANCE": "/nonexistent-kmc-help"},
        )
        assert result.returncode == 0, (path, result.stderr)
        assert "Usage:" in result.stdout


def test_a_live_kmc_refuses_the_plain_software_store_naming_both_ways_out(tmp_path):
    fresh = _fresh(tmp_path, mode="live")
    result = run_kmc(fresh, "init")
    assert result.returncode == 1
    assert result.stderr.startswith("kmc: plain_software_keystore: ")
    assert "KMC_KEYSTORE=pkcs11" in result.stderr and "kmc custodians init" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (fresh.folder / "master.key").exists()
    served = run_kmc(fresh, "serve", "--port", "1")
    assert served.returncode == 1 and served.stderr.startswith("kmc: plain_software_keystore: ")


def test_a_live_kmc_initialises_on_custodians_and_says_so_in_its_certificates(tmp_path):
    fresh = _fresh(tmp_path, mode="live")
    result = run_kmc(fresh, "custodians", "init", "--shares", "3", "--threshold", "2")
    assert result.returncode == 0, result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("share ")]) == 3
    assert not (fresh.folder / "master.key").exists()
    sealed = run_kmc(fresh, "ca", "root", "--out", str(tmp_path / "root.pem"))
    assert (sealed.returncode, sealed.stderr.split(":")[:2]) == (1, ["kmc", " sealed"])
    subject = subprocess.run(
        ["openssl", "x509", "-in", str(fresh.folder / "pki" / "root.pem"), "-noout", "-subject"],
        capture_output=True,
        text=True,
    ).stdout
    assert "OU = live KMC" in subject


def test_the_instance_folder_is_private(tmp_path):
    fresh = _fresh(tmp_path)
    run_kmc(fresh, "init")
    assert stat.S_IMODE(os.stat(fresh.folder).st_mode) == 0o700
