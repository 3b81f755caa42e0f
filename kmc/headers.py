"""What every response tells the browser (docs/security.md, "Browser headers"), and the transport
settings a live KMC must be started with.

A small after-request hook rather than flask-talisman: the KMC needs seven fixed headers, one
narrower policy for one route (the API documentation) and no HTTPS redirect (TLS ends at the
proxy in front of `kmc serve`), which is less code here than configuring and overriding the
library's defaults.
"""

from __future__ import annotations

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from kmc.errors import PolicyRefusal

# Scripts, styles, images and fonts from this KMC only; no inline code anywhere (kmc.js and the
# API documentation's api-docs.js are files); data: images are Bootstrap's own icons (in its CSS).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# Swagger UI (`/api/docs/`) writes style attributes into the page as it renders the document.
DOCUMENTATION_POLICY = CONTENT_SECURITY_POLICY.replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'"
)
DOCUMENTATION_PAGE = "api_docs.page"
# Public code (CSS, JS, icons) may be cached; everything else the KMC answers may not.
STATIC_FILES = frozenset({"static", "bootstrap.static", "api_docs.asset"})
HSTS = "max-age=31536000"


def _add_headers(response: Response, *, secure: bool) -> Response:
    endpoint = request.endpoint
    headers = response.headers
    headers["Content-Security-Policy"] = (
        DOCUMENTATION_POLICY if endpoint == DOCUMENTATION_PAGE else CONTENT_SECURITY_POLICY
    )
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    if endpoint not in STATIC_FILES:
        headers["Cache-Control"] = "no-store"
    if secure:
        headers["Strict-Transport-Security"] = HSTS
    return response


def secure_transport(config: dict[str, object]) -> bool:
    """Browsers reach this KMC over HTTPS: `KMC_SECURE_COOKIES`, or a TLS proxy in front."""
    return bool(config.get("KMC_SECURE_COOKIES") or config.get("KMC_BEHIND_TLS_PROXY"))


def init_app(app: Flask) -> None:
    """The headers on every response; Secure cookies and HSTS over HTTPS; behind a TLS proxy,
    the client's address, scheme and host from its X-Forwarded-* headers (one hop)."""
    secure = secure_transport(app.config)
    if secure:
        app.config.update(SESSION_COOKIE_SECURE=True, REMEMBER_COOKIE_SECURE=True)
    if app.config.get("KMC_BEHIND_TLS_PROXY"):
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.after_request(lambda response: _add_headers(response, secure=secure))


def require_secure_transport(app: Flask) -> None:
    """A live KMC serves browsers over HTTPS only: refuse to serve one configured otherwise."""
    if app.config["KMC_MODE"] == "live" and not secure_transport(app.config):
        raise PolicyRefusal(
            "insecure_transport",
            "a live KMC needs KMC_SECURE_COOKIES=1 (or KMC_BEHIND_TLS_PROXY=1 behind a TLS proxy)",
        )
