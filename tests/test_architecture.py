"""The import structure docs/architecture.md draws, checked: contracts hold, pure modules are pure."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Modules described as pure (no Flask, no database): libraries, domain logic, value objects, and
# the CLI entry points, which must start without loading the web framework.
PURE_MODULES = [
    "sts_token",
    "sts_token.cli",
    "key_load_protocol",
    "kmc",
    "kmc.cli",
    "kmc.errors",
    "kmc.permissions",
    "kmc.audit.chain",
    "kmc.audit.offline",
    "sm_registry.csr",
    "sm_registry.identifiers",
    "vending_keys.domain",
    "sm_emulator.cli",
    "meter_emulator.cli",
]
FRAMEWORKS = ("flask", "werkzeug", "sqlalchemy", "flask_sqlalchemy", "alembic", "wtforms")


@pytest.mark.parametrize("module", PURE_MODULES)
def test_importing_a_pure_module_loads_no_web_framework_or_database(module):
    probe = f"import sys, {module}; print(*[m for m in {FRAMEWORKS!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "", f"importing {module} loaded {loaded}"


def test_the_import_contracts_hold():
    result = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


def test_an_upward_import_breaks_the_contracts(tmp_path):
    """The contracts can fail: in a copy of the tree where the token library imports Flask and
    the core imports a feature, lint-imports names both imports."""
    copy = tmp_path / "tree"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".*", "instance", "__pycache__"))
    with (copy / "sts_token" / "crc.py").open("a") as module:
        module.write("\nimport flask  # noqa: E402,F401\n")
    with (copy / "kmc" / "clock.py").open("a") as module:
        module.write("\nimport sm_registry.service  # noqa: E402,F401\n")
    result = subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=copy,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "sts_token.crc -> flask" in result.stdout
    assert "kmc.clock -> sm_registry.service" in result.stdout
