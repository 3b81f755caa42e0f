"""The JSON API (`/api/v1`): bearer-token clients, JSON errors, and its OpenAPI document."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask

from key_load import api as key_load_api
from kmc import csrf
from kmc.api import accounts
from kmc.api.openapi import build_document
from sm_registry import api as sm_registry_api
from vending_keys import api as vending_keys_api

# Each API module contributes its routes to `bp` and its paths to the OpenAPI document.
API_MODULES: tuple[Any, ...] = (accounts, vending_keys_api, key_load_api, sm_registry_api)


def register_api(app: Flask) -> None:
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    for module in API_MODULES:
        module.register(bp)
    document = build_document(app.config["KMC_NAME"], [m.PATHS for m in API_MODULES])
    bp.add_url_rule("/openapi.json", "openapi", accounts.public_view(lambda: document))
    csrf.exempt(bp)
    app.register_blueprint(bp)
