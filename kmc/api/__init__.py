"""The JSON API front door (`/api/v1`): one blueprint for bearer-token clients, and its OpenAPI
document. Features contribute their routes (`*/api.py`); this package imports none of them."""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from flask import Blueprint, Flask

from kmc.access import PUBLIC, allow
from kmc.api.openapi import build_document
from kmc.extensions import csrf


def init_app(app: Flask, modules: Iterable[ModuleType]) -> None:
    """Each module adds its routes to the blueprint (`register(bp)`) and its paths (`PATHS`)."""
    modules = tuple(modules)
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    for module in modules:
        module.register(bp)
    document = build_document(app.config["KMC_NAME"], [m.PATHS for m in modules])
    bp.add_url_rule("/openapi.json", "openapi", allow(PUBLIC)(lambda: document))
    csrf.exempt(bp)
    app.register_blueprint(bp)
