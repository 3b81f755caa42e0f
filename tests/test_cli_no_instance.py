"""`kmc` outside an initialised instance says so in one line and creates nothing; only
`kmc init` (and `kmc hsm init`) create an instance. Run as the real console script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

KMC = Path(sys.executable).parent / "kmc"


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KMC_")}
    return subprocess.run(
        [str(KMC), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "args",
    [
        ("user", "list"),
        ("sm", "list"),
        ("serve",),
        ("audit", "verify"),
        ("ca", "root", "--out", "root.pem"),
    ],
)
def test_a_command_outside_an_instance_refuses_in_one_line_and_creates_nothing(tmp_path, args):
    answer = run(tmp_path, *args)
    assert answer.returncode == 1
    assert answer.stderr.splitlines() == [
        f"kmc: no_instance: no KMC instance at {tmp_path / 'instance'}: run 'kmc init' to "
        "create one here, or set KMC_INSTANCE to the instance folder"
    ]
    assert list(tmp_path.iterdir()) == []


def test_help_creates_nothing(tmp_path):
    for args in (("--help",), ("user", "--help"), ("sm", "list", "--help"), ("init", "--help")):
        assert run(tmp_path, *args).returncode == 0, args
    assert list(tmp_path.iterdir()) == []


def test_init_creates_the_instance_and_then_commands_run(tmp_path):
    created = run(tmp_path, "init")
    assert created.returncode == 0, created.stderr
    assert "KMC instance ready at" in created.stdout and (tmp_path / "instance").is_dir()
    listed = run(tmp_path, "user", "list")
    assert listed.returncode == 0 and "admin" in listed.stdout, listed.stderr
