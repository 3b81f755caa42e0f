"""The JSON API front door (`/api/v1`): one blueprint for bearer-token clients, its OpenAPI
document generated from the routes' schemas, and the interactive documentation (`/api/docs/`).
Features contribute their routes (`*/api.py`); this package imports none of them."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.resources import files
from types import ModuleType
from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    render_template,
    send_from_directory,
    url_for,
)
from marshmallow import INCLUDE, Schema, fields

from kmc.access import PUBLIC, allow
from kmc.api.openapi import build_document
from kmc.api.schema import operation
from kmc.extensions import csrf

# Swagger UI 5 (OpenAPI 3.1) as the flask-swagger-ui package ships it: served from here, no CDN.
SWAGGER_UI = files("flask_swagger_ui") / "dist"


class OpenAPIDocument(Schema):
    """The OpenAPI 3.1 document of this API"""

    class Meta:
        unknown = INCLUDE

    openapi = fields.String(required=True)


@allow(PUBLIC)
@operation("This OpenAPI document", responses={200: OpenAPIDocument})
def openapi() -> Response:
    return jsonify(current_app.extensions["kmc.openapi"])


@allow(PUBLIC)
def docs_page() -> str:
    return render_template("api/docs.html", document_url=url_for("api.openapi"))


@allow(PUBLIC)
def docs_asset(filename: str) -> Response:
    return send_from_directory(str(SWAGGER_UI), filename)


def init_app(app: Flask, modules: Iterable[ModuleType]) -> None:
    """Each module adds its routes to the blueprint (`register(bp)`); the document is built from
    the registered routes once the blueprint is in place."""
    bp = Blueprint("api", __name__, url_prefix="/api/v1")
    for module in modules:
        module.register(bp)
    bp.add_url_rule("/openapi.json", "openapi", openapi)
    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.extensions["kmc.openapi"] = build_document(app, bp.name, f"{app.config['KMC_NAME']} API")

    docs = Blueprint("api_docs", __name__, url_prefix="/api/docs")
    docs.add_url_rule("/", "page", docs_page)
    docs.add_url_rule("/<path:filename>", "asset", docs_asset)
    app.register_blueprint(docs)


def document(app: Flask) -> dict[str, Any]:
    """The generated OpenAPI document (for tests and tools that need it without a request)."""
    return dict(app.extensions["kmc.openapi"])
