"""Settings read once at start-up from the environment and the instance folder."""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

MODES = ("test", "live")
SECRET_KEY_FILE = "secret_key"


def instance_path_from_env() -> Path:
    """The instance folder: `KMC_INSTANCE`, else `./instance` (resolved to an absolute path)."""
    return Path(os.environ.get("KMC_INSTANCE", "instance")).resolve()


def database_url(instance: Path) -> str:
    """`KMC_DATABASE_URL`, else the embedded SQLite file inside the instance folder."""
    url = os.environ.get("KMC_DATABASE_URL")
    if url:
        if url.startswith("postgresql://"):
            # SQLAlchemy's default PostgreSQL driver is psycopg2; we ship psycopg 3.
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        return url
    return f"sqlite:///{instance / 'kmc.sqlite3'}"


def kmc_mode() -> str:
    mode = os.environ.get("KMC_MODE", "test").strip().lower()
    if mode not in MODES:
        raise ValueError(f"KMC_MODE must be one of {', '.join(MODES)}, not {mode!r}")
    return mode


def write_private_file(path: Path, data: bytes) -> None:
    """Create `path` readable by its owner only (0600); refuses to overwrite an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def ensure_instance_folder(instance: Path) -> None:
    """The instance folder holds the database and sealed keys: owner-only (0700)."""
    instance.mkdir(mode=0o700, parents=True, exist_ok=True)


def ensure_secret_key(instance: Path) -> bytes:
    """The Flask session secret, generated into the instance folder on first use."""
    path = instance / SECRET_KEY_FILE
    if not path.exists():
        write_private_file(path, secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def settings_from_env() -> dict[str, Any]:
    instance = instance_path_from_env()
    return {
        "KMC_INSTANCE": instance,
        "SQLALCHEMY_DATABASE_URI": database_url(instance),
        "KMC_MODE": kmc_mode(),
        "KMC_KEYSTORE": os.environ.get("KMC_KEYSTORE", "software").strip().lower(),
        "KMC_PKCS11_MODULE": os.environ.get("KMC_PKCS11_MODULE", ""),
        "KMC_PKCS11_TOKEN": os.environ.get("KMC_PKCS11_TOKEN", ""),
        "KMC_PKCS11_PIN_FILE": os.environ.get("KMC_PKCS11_PIN_FILE", ""),
        "KMC_PKCS11_KEY_WRAP": os.environ.get("KMC_PKCS11_KEY_WRAP", "AES_KEY_WRAP_PAD"),
        # Where Flask-Limiter keeps its counters: memory:// counts per process (one worker);
        # several workers or hosts need shared storage, e.g. redis://host:6379 (docs/protocol.md).
        "KMC_RATELIMIT_STORAGE_URI": os.environ.get("KMC_RATELIMIT_STORAGE_URI", "memory://"),
        "KMC_SM_KEYLOAD_LIMIT_PER_SM": os.environ.get("KMC_SM_KEYLOAD_LIMIT_PER_SM", "10/minute"),
        "KMC_SM_KEYLOAD_LIMIT_PER_ADDRESS": os.environ.get(
            "KMC_SM_KEYLOAD_LIMIT_PER_ADDRESS", "60/minute"
        ),
        "KMC_SECURE_COOKIES": _flag("KMC_SECURE_COOKIES"),
        "KMC_BEHIND_TLS_PROXY": _flag("KMC_BEHIND_TLS_PROXY"),
        "PERMANENT_SESSION_LIFETIME": timedelta(
            minutes=int(os.environ.get("KMC_SESSION_MINUTES", "30"))
        ),
    }
