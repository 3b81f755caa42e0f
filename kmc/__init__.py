"""The STS Key Management Centre web application."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask_bootstrap import Bootstrap5
from flask_login import LoginManager
from flask_wtf import CSRFProtect

from kmc import config
from kmc.clock import SystemClock
from kmc.database import configure_sqlite, db, migrate
from kmc.keystore import MASTER_KEY_FILE, SoftwareKeyStore

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = Path(__file__).resolve().parent / "migrations"

csrf = CSRFProtect()
login_manager = LoginManager()
bootstrap = Bootstrap5()


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the KMC app; settings come from the environment, then `test_config` overrides."""
    settings = config.settings_from_env()
    if test_config:
        settings.update(test_config)
    instance = Path(settings["KMC_INSTANCE"])
    config.ensure_instance_folder(instance)
    app = Flask(
        __name__,
        instance_path=str(instance),
        template_folder=str(PROJECT_ROOT / "templates"),
    )
    app.config.update(
        SECRET_KEY=config.ensure_secret_key(instance),
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        BOOTSTRAP_SERVE_LOCAL=True,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        KMC_NAME="STS KMC",
    )
    app.config.update(settings)

    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    csrf.init_app(app)
    bootstrap.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    app.extensions["kmc.clock"] = app.config.get("KMC_CLOCK") or SystemClock()
    if (instance / MASTER_KEY_FILE).exists():
        app.extensions["kmc.keystore"] = SoftwareKeyStore.from_instance(instance)

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)

    from kmc import models  # noqa: F401  (registers every table with the metadata)
    from kmc.web import register_web

    register_web(app)
    from kmc.api import register_api

    register_api(app)
    return app
