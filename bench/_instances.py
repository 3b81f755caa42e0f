"""Throwaway KMC instances for benchmarks: SQLite in a temp folder, or a fresh PostgreSQL database."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from kmc import create_app
from kmc.database import db
from kmc.instance import initialise

POSTGRES_URL = os.environ.get(
    "KMC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BACKENDS = ("sqlite", "postgres")


def _fresh_postgres(name: str) -> str:
    admin = create_engine(
        make_url(POSTGRES_URL).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@contextmanager
def bench_instance(backend: str, name: str = "kmc_bench") -> Iterator[tuple[Flask, Path, str]]:
    """An initialised instance; yields (app, instance folder, database URL)."""
    with tempfile.TemporaryDirectory(prefix=f"{name}-") as tmp:
        folder = Path(tmp) / "instance"
        url = (
            _fresh_postgres(name)
            if backend == "postgres"
            else f"sqlite:///{folder / 'kmc.sqlite3'}"
        )
        app = create_app(
            {"KMC_INSTANCE": folder, "SQLALCHEMY_DATABASE_URI": url, "KMC_MODE": "test"}
        )
        with app.app_context():
            initialise("bench")
        try:
            yield app, folder, url
        finally:
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect():
            pass
        engine.dispose()
    except Exception:  # any failure to connect means "skip the PostgreSQL figures"
        return False
    return True
