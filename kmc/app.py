"""The app factory: the one place (with the root CLI) that imports and wires every feature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from key_load import api as key_load_api
from key_load import models as key_load_models
from key_load import service as key_load_service
from key_load import views as key_load_views
from kmc import access, config, headers, pki, sealing, web
from kmc import api as api_layer
from kmc.accounts import api as accounts_api
from kmc.accounts import models as accounts_models
from kmc.accounts import service as accounts_service
from kmc.accounts import views as accounts_views
from kmc.audit import models as audit_models
from kmc.audit import service as audit_service
from kmc.audit import views as audit_views
from kmc.clock import SystemClock
from kmc.custodians import api as custodians_api
from kmc.custodians import views as custodians_views
from kmc.database import configure_sqlite, db, hide_result_rows, migrate
from kmc.extensions import bootstrap, csrf, limiter, login_manager
from kmc.keystore import FAULT_AUDIT, open_keystore
from sm_registry import api as sm_registry_api
from sm_registry import models as sm_registry_models
from sm_registry import service as sm_registry_service
from sm_registry import views as sm_registry_views
from vending_keys import api as vending_keys_api
from vending_keys import models as vending_keys_models
from vending_keys import service as vending_keys_service
from vending_keys import views as vending_keys_views

PACKAGE = Path(__file__).resolve().parent
# The top-level templates/ folder; in the source tree kmc/templates links to it, in a wheel it
# is a copy, so the same path serves both.
TEMPLATES = Path(__file__).parent / "templates"
MIGRATIONS = PACKAGE / "migrations"

# Every table, so the metadata (and Alembic) sees them all.
MODELS = (
    pki,
    accounts_models,
    audit_models,
    sm_registry_models,
    vending_keys_models,
    key_load_models,
)
BLUEPRINTS = (
    accounts_views.auth,
    accounts_views.admin,
    web.main,
    audit_views.bp,
    sm_registry_views.bp,
    vending_keys_views.bp,
    key_load_views.bp,
    custodians_views.bp,
)
API_MODULES = (accounts_api, vending_keys_api, key_load_api, sm_registry_api, custodians_api)


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
        template_folder=str(TEMPLATES),
        static_folder=str(PACKAGE / "static"),  # favicon, CSS, kmc.js, api-docs.js: no inline code
    )
    app.config.update(
        # No bound parameter in any log line: they can hold hashes of secrets (docs/security.md).
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True, "hide_parameters": True},
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        BOOTSTRAP_SERVE_LOCAL=True,
        MAX_CONTENT_LENGTH=16 * 1024 * 1024,
        KMC_NAME="STS KMC",
    )
    app.config.update(settings)
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["KMC_RATELIMIT_STORAGE_URI"])
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)

    headers.init_app(app)
    db.init_app(app)
    hide_result_rows()
    migrate.init_app(app, db, directory=str(MIGRATIONS))
    csrf.init_app(app)
    limiter.init_app(app)
    bootstrap.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    app.extensions["kmc.clock"] = app.config.get("KMC_CLOCK") or SystemClock()
    sealing.init_app(app)
    app.extensions[FAULT_AUDIT] = audit_service.record_keystore_fault
    store = open_keystore(app.config)
    if store is not None:
        app.extensions["kmc.keystore"] = store
    # Every node on one token signs sessions with the token's secret; else the folder's file.
    shared_secret = store.session_secret() if store is not None else None
    app.config["SECRET_KEY"] = shared_secret or config.ensure_secret_key(instance)
    access.init_app(
        app,
        session_user=accounts_service.user_for_session,
        token_user=accounts_service.user_for_token,
        named_user=accounts_service.find_user,
    )
    vending_keys_service.init_app(app, holders=key_load_service.recipients_of)
    sm_registry_service.init_app(app, key_loads=key_load_service.loads_of)

    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            configure_sqlite(db.engine)

    web.init_app(
        app,
        home_panels=(
            sm_registry_views.home_panel,
            vending_keys_views.home_panel,
            key_load_views.home_panel,
            audit_views.home_panel,
        ),
        badges={"keys.approvals": vending_keys_views.approvals_waiting},
    )
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    api_layer.init_app(app, API_MODULES)
    return app
