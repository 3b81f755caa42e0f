"""The SM operator's page (`/page/`): key registers, limits, expiry warnings, recent tokens
(PAN masked) and a button for online key loading. Read-mostly; login required.

Login is with one of the service's bearer tokens (`--tokens-file`; without one the page admits
nobody); the session is a signed cookie (itsdangerous, the signer Flask uses; the key is
STATE/page.secret, 0600) that lasts `SESSION_SECONDS`, HttpOnly, Secure, SameSite=Strict. Every
form carries the session's CSRF token, checked before anything is done. Plain Werkzeug and
Jinja2: the vending side imports neither the KMC nor Flask.
"""

from __future__ import annotations

import hmac
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, PackageLoader, select_autoescape
from werkzeug.routing import Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from sm_emulator.errors import SmError
from sm_emulator.expiry import warnings
from sm_emulator.online import load_online

if TYPE_CHECKING:
    from sm_emulator.api import VendingService

SECRET_FILE = "page.secret"
COOKIE = "sm_page"
SESSION_SECONDS = 30 * 60
RECENT_TOKENS = 20
_TEMPLATES = Environment(
    loader=PackageLoader("sm_emulator", "templates"), autoescape=select_autoescape()
)


def mask_pan(pan: str) -> str:
    """The PAN as the page shows it: the IIN and the last four digits."""
    return pan[:6] + "*" * max(len(pan) - 10, 0) + pan[-4:]


def _secret(state: Path) -> bytes:
    path = state / SECRET_FILE
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class Page:
    """The page's routes over one vending service (its SM, its bearer tokens, its KMC)."""

    RULES = (
        Rule("/page/", endpoint="page:home", methods=["GET"]),
        Rule("/page/login", endpoint="page:login", methods=["GET", "POST"]),
        Rule("/page/logout", endpoint="page:logout", methods=["POST"]),
        Rule("/page/keyload", endpoint="page:keyload", methods=["POST"]),
    )

    def __init__(self, service: VendingService) -> None:
        self.service = service
        self.signer = URLSafeTimedSerializer(_secret(service.state), salt="sm-emulator-page")

    def _session(self, request: Request) -> dict[str, Any]:
        try:
            data = self.signer.loads(request.cookies.get(COOKIE, ""), max_age=SESSION_SECONDS)
        except BadSignature:
            return {}
        return data if isinstance(data, dict) else {}

    def _render(self, session: dict[str, Any], template: str, **context: Any) -> Response:
        csrf = session.get("csrf") or secrets.token_urlsafe(24)
        session = {**session, "csrf": csrf}
        html = _TEMPLATES.get_template(template).render(csrf=csrf, **context)
        response = Response(html, mimetype="text/html")
        self._keep(response, session)
        return response

    def _keep(self, response: Response, session: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE,
            self.signer.dumps(session),
            max_age=SESSION_SECONDS,
            httponly=True,
            secure=True,
            samesite="Strict",
            path="/page/",
        )
        response.headers["Cache-Control"] = "no-store"
        response.headers["Content-Security-Policy"] = (
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'"
        )

    @staticmethod
    def _csrf_ok(request: Request, session: dict[str, Any]) -> bool:
        sent, expected = request.form.get("csrf_token", ""), session.get("csrf", "")
        return bool(expected) and hmac.compare_digest(sent, expected)

    def __call__(self, endpoint: str, request: Request) -> Response:
        session = self._session(request)
        if request.method == "POST" and not self._csrf_ok(request, session):
            return Response("the form expired or was not sent by this page; reload it", status=400)
        handler: Callable[[Request, dict[str, Any]], Response] = {
            "page:home": self.home,
            "page:login": self.login,
            "page:logout": self.logout,
            "page:keyload": self.keyload,
        }[endpoint]
        if endpoint != "page:login" and not session.get("user"):
            return redirect("/page/login")
        return handler(request, session)

    def login(self, request: Request, session: dict[str, Any]) -> Response:
        if request.method == "GET":
            return self._render(session, "login.html", error=None)
        tokens = self.service.tokens
        token = request.form.get("token", "").strip()
        if tokens is None or not tokens.admits(f"Bearer {token}"):
            error = (
                "this service has no --tokens-file: the page admits nobody"
                if tokens is None
                else "that is not one of this service's tokens"
            )
            return self._render(session, "login.html", error=error)
        response = redirect("/page/")
        # A fresh CSRF token with the login: one seen before it cannot be reused after.
        self._keep(response, {"user": True, "csrf": secrets.token_urlsafe(24)})
        return response

    def logout(self, request: Request, session: dict[str, Any]) -> Response:
        response = redirect("/page/login")
        response.delete_cookie(COOKIE, path="/page/")
        return response

    def home(self, request: Request, session: dict[str, Any], message: str = "") -> Response:
        sm = self.service.sm()
        registers = sm.registers()
        return self._render(
            session,
            "page.html",
            status=sm.status(),
            registers=[r.to_dict() for r in registers],
            warnings=[w.to_dict() for w in warnings(registers, sm.clock())],
            recent=[
                {**issue, "pan": mask_pan(issue["pan"])}
                for issue in sm.recent_tokens(RECENT_TOKENS)
            ],
            online=self.service.kmc is not None,
            message=message,
        )

    def keyload(self, request: Request, session: dict[str, Any]) -> Response:
        if self.service.kmc is None:
            return self.home(request, session, "this service was started without --kmc URL")
        try:
            loaded = load_online(self.service.sm(), self.service.kmc, None)
        except SmError as error:
            return self.home(
                request, session, f"Key load refused ({error.reason}): {error.message}"
            )
        keys = ", ".join(f"{r.identity} (KCV {r.kcv})" for r in loaded.registers) or "no keys"
        return self.home(request, session, f"Loaded EKLF #{loaded.sequence}: {keys}")
