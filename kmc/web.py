"""The web front door's frame: the layout, the home page, and the one place errors become pages.

Features register their own blueprints (`*/views.py`); this module imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from flask import (
    Blueprint,
    Flask,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from markupsafe import Markup, escape
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter
from werkzeug.wrappers import Response

from kmc import access, listing, pki, text
from kmc.database import db
from kmc.errors import InvalidInput, KMCError, TooManyAttempts
from kmc.permissions import Caller, Permission

NAVIGATION = (
    # (endpoint, label, roles that see it)
    ("main.home", "Home", ("admin", "operator", "manufacturer", "auditor")),
    ("admin.users", "Users", ("admin",)),
    ("admin.tokens", "API tokens", ("admin",)),
    ("audit_ui.log", "Audit log", ("admin", "auditor")),
    ("registry.sms", "Security modules", ("admin", "operator", "manufacturer", "auditor")),
    ("registry.register", "Register SMs", ("admin", "manufacturer")),
    ("registry.manufacturers", "Manufacturers", ("admin", "operator", "auditor")),
    ("keys.index", "Keys", ("admin", "operator", "auditor")),
    ("keys.approvals", "Approvals", ("admin", "operator", "auditor")),
    ("keyload.index", "Key loading", ("admin", "operator", "auditor")),
    ("custodians.index", "Custodians", ("admin", "operator")),
    ("main.certificates", "Certificates", ("admin", "operator", "manufacturer", "auditor")),
)
# The KMC certificates people download (name in kmc.pki → file name); "chain" is the SM
# issuing CA then the root, what an SM certificate verifies against.
CERTIFICATE_FILES = {
    "root": "kmc-root.pem",
    "issuing": "kmc-sm-issuing-ca.pem",
    "keyload": "kmc-keyload-signer.pem",
    "audit": "kmc-audit-signer.pem",
    "chain": "kmc-chain.pem",
}


R = TypeVar("R")


@dataclass(frozen=True)
class HomeItem:
    """One line of a home panel: what waits, how many (or a value), and where to act on it."""

    label: str
    value: object
    url: str | None = None
    tone: str = "secondary"  # a Bootstrap colour: "warning" when someone must act


@dataclass(frozen=True)
class HomePanel:
    """A feature's box on the home page (registered by the app factory, see `init_app`)."""

    title: str
    items: Sequence[HomeItem] = field(default_factory=tuple)


# A feature's panel for a caller, or None when it has nothing for that caller's role.
PanelSource = Callable[[Caller], HomePanel | None]
# How many things wait behind a menu entry, for this caller (0 shows no badge).
BadgeSource = Callable[[Caller], int]


def when(value: datetime | str | None) -> Markup:
    """The one date format for people: `2026-12-01 19:18 UTC`, the exact ISO time in a tooltip
    and in `<time datetime>` (the API keeps ISO 8601)."""
    if value is None or value == "":
        return Markup("&ndash;")
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    exact = escape(moment.isoformat())
    return Markup(f'<time datetime="{exact}" title="{exact}">{moment:%Y-%m-%d %H:%M} UTC</time>')


def list_at(endpoint: str, **view_args: Any) -> None:
    """A list page rendered by a POST (a form sent back with its fields marked): its links and
    its search form lead to the list's own URL, not to the form's."""
    g.kmc_list_at = (endpoint, view_args)


def _list_target() -> tuple[str, dict[str, Any]]:
    at: tuple[str, dict[str, Any]] | None = g.get("kmc_list_at")
    return at or (request.endpoint or "main.home", dict(request.view_args or {}))


def list_base() -> str:
    """The list page's URL without a query: the search form's action and its Clear link."""
    endpoint, view_args = _list_target()
    return url_for(endpoint, **view_args)


def list_url(**changes: object) -> str:
    """This list's URL with some query parameters changed (None drops one): the links of a
    list's sort headers and pager (templates/listing.html). Changing anything but the page
    goes back to page 1."""
    args = dict(request.args.items())
    if "page" not in changes:
        args.pop("page", None)
    for key, value in changes.items():
        if value is None:
            args.pop(key, None)
        else:
            args[key] = str(value)
    endpoint, kept = _list_target()
    kept.update((key, value) for key, value in args.items() if value != "")
    return url_for(endpoint, **kept)


def attempt(action: Callable[[], R], form: Any = None) -> R | None:
    """Run a page's service call: a refusal becomes the page's flash message (and None), the
    one place a `KMCError` becomes a flash; the view then redirects or re-renders its form.

    With a `form`, the refusal is also put on the field it is about, so the re-rendered form
    marks that field (`is-invalid`, the message beside it): the form's `refusal_fields` maps a
    refusal reason, or `reason:field` for messages that start with the field's name (such as
    `invalid_time` with `act: ...`), to a field name."""
    try:
        return action()
    except KMCError as refused:
        field = _refused_field(form, refused) if form is not None else None
        if field is not None:
            field.errors = [*field.errors, refused.message]
        flash(refused.message, "danger")
        return None


def _refused_field(form: Any, refused: KMCError) -> Any:
    fields: dict[str, str] = getattr(form, "refusal_fields", {})
    named = f"{refused.reason}:{refused.message.split(':', 1)[0]}"
    name = fields.get(named) or fields.get(refused.reason)
    return form[name] if name is not None and name in form else None


def flash_form_errors(form: Any) -> None:
    """A form that failed its own validation, as one flash message naming each field."""
    flash(
        "; ".join(f"{name}: {', '.join(errors)}" for name, errors in form.errors.items()), "danger"
    )


def flash_check_fields(form: Any) -> None:
    """A form re-rendered with its fields marked: one line saying which to look at."""
    names = [form[name].label.text for name in form.errors if name in form]
    flash(f"Check the marked field{'s' if len(names) > 1 else ''}: {', '.join(names)}.", "danger")


class StoredInteger(IntegerConverter):
    """`<int:...>` in a route: at most 2**31 - 1, the largest integer key every supported
    database stores, so a larger one is no route (404) instead of a database error."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:  # noqa: A002 (werkzeug's)
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(map, *args, **kwargs)


def refuse_bad_text() -> None:
    """Before every request: the path and the query string are one-line text, form fields are
    text (kmc.text); anything else is refused with 400 `invalid_text` before a view runs."""
    given = [("the path", request.path, True)]
    given += [("a query parameter", part, True) for pair in request.args.items() for part in pair]
    if request.method == "POST" and not access.is_api_request():
        given += [("a form field", part, False) for pair in request.form.items() for part in pair]
    for what, value, one_line in given:
        found = text.problem(value, one_line=one_line)
        if found is not None:
            raise InvalidInput(text.REASON, f"{what} {found}")


main = Blueprint("main", __name__)


@main.route("/")
@access.allow(access.PUBLIC)
def index() -> Response:
    return redirect(url_for("main.home" if current_user.is_authenticated else "auth.login"))


@main.route("/home")
@access.allow(Permission.OWN_ACCOUNT)
def home() -> str:
    caller = access.current_caller()
    sources: Sequence[PanelSource] = current_app.extensions["kmc.home_panels"]
    panels = [panel for panel in (source(caller) for source in sources) if panel is not None]
    return render_template("home.html", panels=panels)


@main.route("/glossary")
@access.allow(Permission.OWN_ACCOUNT)
def glossary() -> str:
    return render_template("glossary.html")


@main.route("/certificates")
@access.allow(Permission.OWN_ACCOUNT)
def certificates() -> str:
    """The KMC's public certificates with their fingerprints and the OpenSSL commands that use
    them (verifying an SM certificate, a signed export, an EKLF's signer)."""
    found = pki.current().certificates()
    rows = [
        {
            "name": name,
            "title": pki.TITLES[name],
            "file": CERTIFICATE_FILES[name],
            "subject": certificate.subject.rfc4514_string(),
            "issuer": certificate.issuer.rfc4514_string(),
            "not_after": certificate.not_valid_after_utc,
            "sha256": certificate.fingerprint(hashes.SHA256()).hex(":").upper(),
        }
        for name, certificate in found.items()
    ]
    return render_template("certificates.html", certificates=rows, files=CERTIFICATE_FILES)


@main.route("/certificates/<any(root, issuing, keyload, audit, chain):name>.pem")
@access.allow(Permission.OWN_ACCOUNT)
def certificate(name: str) -> Response:
    found = pki.current().certificates()
    chosen = (found["issuing"], found["root"]) if name == "chain" else (found[name],)
    return Response(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chosen),
        mimetype="application/x-pem-file",
        headers={"Content-Disposition": f"attachment; filename={CERTIFICATE_FILES[name]}"},
    )


# A form sent after its session expired is kept for the page it came from, to fill in again
# once the person has logged in (kmc.js): never these fields (secrets, or a typed confirmation
# of an irreversible action), never files, and only what fits in the session cookie.
NEVER_KEPT = frozenset({"csrf_token", "password", "current", "new", "confirm", "share"})
MAX_KEPT_CHARACTERS = 2000


def same_site_path(target: str | None) -> str | None:
    """`target` as a path on this site (with its query), or None: an absolute URL counts only
    for this host, and nothing a browser could read as another site (`//x`, `/\\x`) passes."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme not in ("", "http", "https") or parts.netloc not in ("", request.host):
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return None
    return path


# Where an expired session's form waits for its person to log in again (kept across login).
RESUME_KEY = "kmc_resume"


def _form_page() -> str:
    """The page the form is on: the referrer when a browser sends one (Referrer-Policy is
    `no-referrer`, so ours do not), else the form's own URL when it also serves GET (the pages
    whose form posts to themselves), else home."""
    page = same_site_path(request.referrer)
    if page:
        return page
    try:
        current_app.url_map.bind_to_environ(request.environ).match(request.path, method="GET")
    except HTTPException:
        return url_for("main.home")
    return request.path


def _keep_expired_form() -> str:
    """Keep what the expired form held (see NEVER_KEPT) and say where to return after login."""
    page = _form_page()
    fields = [
        [name, value]
        for name, value in request.form.items(multi=True)
        if name.rsplit("-", 1)[-1] not in NEVER_KEPT
    ]
    if fields and sum(len(n) + len(v) for n, v in fields) <= MAX_KEPT_CHARACTERS:
        session[RESUME_KEY] = {"page": page, "action": request.path, "fields": fields}
        flash(
            "Your session expired. Log in again: the form is then filled in with what you "
            "typed (passwords and confirmations excepted), for you to check and send.",
            "warning",
        )
    else:
        flash("Your session expired. Log in again, then send the form again.", "warning")
    return page


def _resumed_form() -> dict[str, Any] | None:
    """The expired form kept for this page, once its person is logged in again (once only)."""
    kept = session.get(RESUME_KEY)
    if not kept or not current_user.is_authenticated or request.method != "GET":
        return None
    if same_site_path(request.full_path.rstrip("?")) != kept.get("page"):
        return None
    session.pop(RESUME_KEY, None)
    return {"action": kept["action"], "fields": kept["fields"]}


def _error_page(status: int, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, message=message), status


def _api_or_page(status: int, reason: str, message: str, **details: int) -> Any:
    if access.is_api_request():
        return {"error": reason, "message": message, **details}, status
    return _error_page(status, message)


def init_app(
    app: Flask,
    *,
    home_panels: Sequence[PanelSource] = (),
    badges: dict[str, BadgeSource] | None = None,
) -> None:
    """The layout's context, deny-by-default access before every request, the error pages.

    The features above the core give the home page its panels and the menu its badges (the app
    factory passes them in: this module imports no feature)."""
    app.url_map.converters["int"] = StoredInteger
    app.before_request(refuse_bad_text)
    app.before_request(access.enforce)
    app.extensions["kmc.home_panels"] = tuple(home_panels)
    counters = dict(badges or {})
    app.add_template_filter(when, "when")
    app.add_template_global(list_url, "list_url")
    app.add_template_global(list_base, "list_base")
    app.jinja_env.globals["per_page_choices"] = listing.PER_PAGE_CHOICES

    @app.context_processor
    def _layout() -> dict[str, Any]:
        user = access.current_actor()
        role = user.role if user is not None else None
        caller = Caller.of(user) if user is not None else None
        return {
            "kmc_mode": app.config["KMC_MODE"],
            "kmc_name": app.config["KMC_NAME"],
            "resume_form": _resumed_form(),
            "navigation": [
                (e, label, counters[e](caller) if caller is not None and e in counters else 0)
                for e, label, roles in NAVIGATION
                if role in roles
            ],
        }

    @app.errorhandler(KMCError)
    def _kmc_error(error: KMCError) -> Any:
        db.session.rollback()
        reply = _api_or_page(error.http_status, error.reason, error.message, **error.details)
        if isinstance(error, TooManyAttempts):
            return (*reply, {"Retry-After": str(error.retry_after)})
        return reply

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError) -> Any:
        # A form of ours (it carries a token, of a session that is gone): log in and resume.
        ours = any(name.rsplit("-", 1)[-1] == "csrf_token" for name in request.form)
        if ours and not access.is_api_request() and not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=_keep_expired_form()))
        return _api_or_page(
            400, "csrf", "the form expired or was not sent by this site; reload and retry"
        )

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Any:
        status = error.code or 500
        reason = (error.name or "error").lower().replace(" ", "_")
        reply = _api_or_page(status, reason, error.description or error.name)
        allowed = [value for name, value in error.get_headers() if name == "Allow"]
        return (*reply, {"Allow": allowed[0]}) if allowed else reply  # a 405 says what is allowed

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Any:
        db.session.rollback()
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return _api_or_page(
            500, "internal_error", "the KMC hit an internal error; nothing was changed"
        )
