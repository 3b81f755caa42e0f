"""Shared fixtures: an initialised KMC instance per test, on SQLite and on PostgreSQL.

Each backend gets one template instance per session (keys, PKI, migrated database, one account
per role); every test works on a fresh copy of it, so tests are isolated and fast. PostgreSQL
copies use `CREATE DATABASE ... TEMPLATE`. Outside CI a missing PostgreSQL or Chromium skips the
tests that need it, with the reason; under CI (CI=true) it fails them.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import settings
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from factories.callers import caller
from factories.registry import add_manufacturer
from kmc import create_app
from kmc.accounts.service import create_user
from kmc.database import db, use_case
from kmc.instance import initialise

IN_CI = os.environ.get("CI", "").lower() == "true"
# Under CI every hypothesis and schemathesis test draws the same examples each run (a red CI is
# a change, never a new random draw); elsewhere each run explores afresh (docs/fuzzing.md).
settings.register_profile("ci", derandomize=True)
if IN_CI:
    settings.load_profile("ci")
POSTGRES_URL = os.environ.get(
    "KMC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# A Redis database the tests may flush (the shared rate-limit counters of several workers).
REDIS_URL = os.environ.get("KMC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PASSWORD = "correct horse battery staple"
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_STS = SHARED / "sts"
# One account per role, plus a second manufacturer to prove manufacturers are kept apart.
MANUFACTURERS = {"1A2B": "Acme Meters", "3C4D": "Other Modules"}
ACCOUNTS = {
    "admin1": ("admin", None),
    "operator1": ("operator", None),
    "operator2": ("operator", None),
    "auditor1": ("auditor", None),
    "maker1": ("manufacturer", "1A2B"),
    "maker2": ("manufacturer", "3C4D"),
}


def require(condition: bool, reason: str) -> None:
    """Skip outside CI, fail under CI: CI must exercise PostgreSQL and the browser for real."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def require_shared_sts() -> Path:
    """The shared STS folder (SPEC, vectors, EA07 tables); skips the calling module when absent."""
    if not SHARED_STS.is_dir():
        pytest.skip(f"shared STS folder {SHARED_STS} is absent", allow_module_level=True)
    return SHARED_STS


@pytest.fixture(scope="module")
def pki() -> Any:
    """The key-load protocol's test PKI (KMC root, key-load signers, one SM), fresh keys per module."""
    from factories.pki import make_pki

    return make_pki()


def _postgres_reachable() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # any driver/connection failure means "not available"
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {type(error).__name__}"
    return None


def _admin_url() -> str:
    return make_url(POSTGRES_URL).set(database="postgres").render_as_string(hide_password=False)


def _pg_copy(template: str, target: str) -> str:
    engine = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)'))
        if template:
            connection.execute(text(f'CREATE DATABASE "{target}" TEMPLATE "{template}"'))
        else:
            connection.execute(text(f'CREATE DATABASE "{target}"'))
    engine.dispose()
    return make_url(POSTGRES_URL).set(database=target).render_as_string(hide_password=False)


SOFTHSM_MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
HSM_TOKEN = "kmc-test"
HSM_PIN = "1234"


@dataclass(frozen=True)
class SoftHsm:
    """SoftHSM2 tokens private to this test session (their own token directory and config)."""

    folder: Path
    conf: Path
    pin_file: Path
    module: Path = SOFTHSM_MODULE

    def token(self, label: str = HSM_TOKEN) -> dict[str, str]:
        """The KMC settings for token `label`, initialised on first use."""
        marker = self.folder / f"{label}.initialised"
        if not marker.exists():
            subprocess.run(
                ["softhsm2-util", "--init-token", "--free", "--label", label]
                + ["--pin", HSM_PIN, "--so-pin", "5678"],
                check=True,
                capture_output=True,
            )
            marker.touch()
        return {
            "KMC_KEYSTORE": "pkcs11",
            "KMC_PKCS11_MODULE": str(self.module),
            "KMC_PKCS11_TOKEN": label,
            "KMC_PKCS11_PIN_FILE": str(self.pin_file),
        }

    def key_access(self, label: str) -> dict[str, str]:
        """OpenSC's pkcs11-tool (an independent reader) on token `label`: the `Access:` line of
        each private or secret key, by key label. Skips outside CI, fails under CI, without it."""
        tool = shutil.which("pkcs11-tool")
        require(tool is not None, "pkcs11-tool is not installed (apt-get install -y opensc)")
        listing = subprocess.run(
            [str(tool), "--module", str(self.module), "--token-label", label]
            + ["--login", "--pin", HSM_PIN, "--list-objects"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        access: dict[str, str] = {}
        kind = key = ""
        for line in listing.splitlines():
            if line and not line.startswith(" "):
                kind = line
            elif line.strip().startswith("label:"):
                key = line.split(":", 1)[1].strip()
            elif line.strip().startswith("Access:") and ("Private" in kind or "Secret" in kind):
                access[key] = line.split(":", 1)[1].strip()
        return access


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm:
    """Initialises a token in a temporary directory; SOFTHSM2_CONF points there for the session
    (subprocesses inherit it). Skips outside CI, fails under CI, when SoftHSM2 is absent."""
    require(
        SOFTHSM_MODULE.exists() and shutil.which("softhsm2-util") is not None,
        "SoftHSM2 is not installed (apt-get install -y softhsm2 opensc)",
    )
    folder = tmp_path_factory.mktemp("softhsm")
    (folder / "tokens").mkdir()
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {folder / 'tokens'}\nobjectstore.backend = file\n")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    pin_file = folder / "pin"
    pin_file.write_text(HSM_PIN)
    pin_file.chmod(0o600)
    hsm = SoftHsm(folder, conf, pin_file)
    for label in ("kmc-sqlite", "kmc-postgres", "kmc-contract", "kmc-reuse"):
        hsm.token(label)  # before any test loads the module, which lists tokens once
    return hsm


@pytest.fixture
def keystore() -> str:
    """Override in a test module (params) to run its tests over both key store back ends."""
    return "software"


@pytest.fixture
def keystore_settings(
    keystore: str, backend: str, request: pytest.FixtureRequest
) -> dict[str, str]:
    """The key store settings of this test's template: one token per database back end."""
    if keystore == "pkcs11":
        return request.getfixturevalue("softhsm").token(f"kmc-{backend}")
    return {"KMC_KEYSTORE": "software"}


@dataclass
class Template:
    backend: str
    folder: Path
    database: str  # PostgreSQL template database name; "" for SQLite
    admin_password: str


def _worker() -> str:
    """Database names unique to this pytest process, so concurrent runs never share one."""
    return f"{os.getpid()}"


@pytest.fixture(scope="session")
def templates() -> Iterator[dict[str, Template]]:
    built: dict[str, Template] = {}
    yield built
    databases = [t.database for t in built.values() if t.database]
    if databases:
        engine = create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            for name in (f"kmc_test_{_worker()}", *databases):
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@use_case
def _add_fixtures(app: Flask) -> None:
    """The test manufacturers and accounts, committed with their audit entries."""
    for id_man, name in MANUFACTURERS.items():
        add_manufacturer(id_man, name, app.extensions["kmc.clock"].now())
    for username, (role, id_man) in ACCOUNTS.items():
        create_user(caller("cli:test-setup"), username, role, PASSWORD, id_man)


def _build_template(backend: str, folder: Path, keystore: dict[str, str]) -> Template:
    database = ""
    overrides: dict[str, Any] = {"KMC_INSTANCE": folder, "KMC_MODE": "test", **keystore}
    if backend == "postgres":
        database = f"kmc_tpl_{_worker()}_{keystore['KMC_KEYSTORE']}"
        overrides["SQLALCHEMY_DATABASE_URI"] = _pg_copy("", database)
    else:
        overrides["SQLALCHEMY_DATABASE_URI"] = f"sqlite:///{folder / 'kmc.sqlite3'}"
    app = create_app(overrides)
    with app.app_context():
        report = initialise("cli:test-setup")
        _add_fixtures(app)
        db.engine.dispose()
    assert report.admin_password is not None
    return Template(backend, folder, database, report.admin_password)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgres":
        problem = _postgres_reachable()
        require(problem is None, problem or "")
    return str(request.param)


@pytest.fixture
def template(
    backend: str,
    keystore_settings: dict[str, str],
    templates: dict[str, Template],
    tmp_path_factory: pytest.TempPathFactory,
) -> Template:
    name = f"{backend}-{keystore_settings['KMC_KEYSTORE']}"
    if name not in templates:
        templates[name] = _build_template(
            backend, tmp_path_factory.mktemp(f"template-{name}"), keystore_settings
        )
    return templates[name]


@dataclass
class Instance:
    """A test's own KMC instance: its folder, database URL and mode (for CLI subprocesses too)."""

    folder: Path
    database_url: str
    mode: str
    admin_password: str
    keystore: dict[str, str]

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KMC_INSTANCE=str(self.folder),
            KMC_DATABASE_URL=self.database_url,
            KMC_MODE=self.mode,
            **self.keystore,
            **extra,
        )
        return env


@pytest.fixture
def kmc_mode() -> str:
    """Override in a test module (or with indirect parametrisation) to run in live mode."""
    return "test"


@pytest.fixture
def instance(
    template: Template, tmp_path: Path, kmc_mode: str, keystore_settings: dict[str, str]
) -> Iterator[Instance]:
    folder = tmp_path / "instance"
    shutil.copytree(template.folder, folder)
    if template.backend == "postgres":
        url = _pg_copy(template.database, f"kmc_test_{_worker()}")
    else:
        url = f"sqlite:///{folder / 'kmc.sqlite3'}"
    yield Instance(folder, url, kmc_mode, template.admin_password, keystore_settings)


class DocumentedClient(FlaskClient):
    """A test client that checks every `/api/v1` response (status, headers, body) against the
    generated OpenAPI document, so a response the document does not describe fails the test that
    produced it."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        response = super().open(*args, **kwargs)
        if response.request.path.startswith(API_PREFIX):
            check_documented(self.application, response)
        return response


API_PREFIX = "/api/v1/"


@functools.cache
def _openapi(document: str) -> Any:
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(json.loads(document))


def check_documented(app: Flask, response: Any) -> None:
    """`response` fits the app's OpenAPI document, or AssertionError saying how it does not."""
    from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
    from openapi_core.exceptions import OpenAPIError

    from kmc.api import document

    class Sent(WerkzeugOpenAPIRequest):
        body = None  # the view read the stream; only the response is checked

    spec = _openapi(json.dumps(document(app), sort_keys=True))
    try:
        spec.validate_response(Sent(response.request), WerkzeugOpenAPIResponse(response))
    except OpenAPIError as error:
        causes = getattr(error.__cause__, "schema_errors", ()) or ()
        raise AssertionError(
            f"{response.request.method} {response.request.path} -> {response.status_code} "
            f"is not what the OpenAPI document says: {error}; "
            + "; ".join(getattr(c, "message", str(c)) for c in causes)
            + f"\n{response.get_data(as_text=True)[:300]}"
        ) from error


class TemplateCode(BytecodeCache):
    """Compiled pages kept for the session: each test's app has its own Jinja environment, which
    would compile every page it renders anew (most of a web test's time). Jinja keys each entry
    by the template's name and the checksum of its source, so an edited page compiles again."""

    def __init__(self) -> None:
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket: Bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()


TEMPLATE_CODE = TemplateCode()


@pytest.fixture
def app(instance: Instance) -> Iterator[Flask]:
    app = create_app(
        {
            "KMC_INSTANCE": instance.folder,
            "SQLALCHEMY_DATABASE_URI": instance.database_url,
            "KMC_MODE": instance.mode,
            **instance.keystore,
            "TESTING": True,
        }
    )
    app.test_client_class = DocumentedClient
    app.jinja_env.bytecode_cache = TEMPLATE_CODE
    if instance.mode == "live":
        split_and_unseal(app)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def split_master_key(folder: Path) -> list[str]:
    """Split an instance's software master key among 3 custodians (2 unseal) and remove the key
    file, as `kmc custodians init` does; the shares, for the test to enter."""
    from kmc import sealing

    key_file = folder / sealing.MASTER_KEY_FILE
    custody, shares = sealing.split(key_file.read_bytes(), 3, 2)
    custody.write(folder)
    key_file.unlink()
    return list(shares)


def split_and_unseal(app: Flask) -> None:
    """A live KMC on the software store runs on split knowledge: split its master key (2 of 3)
    and unseal it here. On a token there is nothing to split."""
    from kmc import sealing

    if app.config["KMC_KEYSTORE"] != "software":
        return
    from kmc.keystore import SoftwareKeyStore

    folder = app.config["KMC_INSTANCE"]
    shares = split_master_key(folder)
    sealing.install_vault(app)
    app.extensions["kmc.keystore"] = SoftwareKeyStore.from_instance(folder)
    vault = sealing.vault_of(app)
    assert vault is not None
    for share in shares[:2]:
        vault.enter(share)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class KmcRunner:
    """Runs `kmc` commands in process against the test's app, like a shell user would."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None) -> Any:
        from kmc.cli import main

        return self.runner.invoke(main, list(args), obj=self.app, input=input)


@pytest.fixture
def kmc(app: Flask) -> KmcRunner:
    return KmcRunner(app)


def run_kmc(
    instance: Instance, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """The real console script in a subprocess (what an operator or a script runs)."""
    exe = Path(sys.executable).parent / "kmc"
    return subprocess.run(
        [str(exe), *args],
        env=instance.env(),
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )


_CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    token = csrf_token(client)
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def post_form(
    client: FlaskClient, path: str, data: dict[str, Any], token_from: str = "/home"
) -> Any:
    return client.post(path, data={**data, "csrf_token": csrf_token(client, token_from)})


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def kmc_server(
    env: dict[str, str], log_path: Path, *options: str
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`kmc serve` with `options` on a free local port, once it answers; yields (port, process)."""
    port = _free_port()
    exe = Path(sys.executable).parent / "kmc"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(exe), "serve", "--port", str(port), *options],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                    connection.request("GET", "/login")
                    assert connection.getresponse().status == 200
                    connection.close()
                    break
                except OSError:
                    assert process.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "kmc serve did not start"
                    time.sleep(0.1)
            yield port, process
        finally:
            process.terminate()
            process.wait(timeout=20)


@pytest.fixture
def live_server(instance: Instance) -> Iterator[str]:
    """`kmc serve` (waitress) on a free local port against this test's instance; yields its URL."""
    with kmc_server(instance.env(), instance.folder.parent / "serve.log") as (port, _):
        yield f"http://127.0.0.1:{port}"


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (Playwright's own browser download is not possible here)."""
    executable = shutil.which("chromium")
    require(executable is not None, "Chromium is not installed (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - the test extra installs it
        require(False, "the playwright package is not installed")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        yield browser
        browser.close()


@contextmanager
def browser_page(chromium: Any, base_url: str) -> Iterator[Any]:
    """A page in a fresh browser context on `base_url`; confirmation dialogs (kmc.js, forms with
    data-confirm) are accepted, as a person would, and whatever the Content-Security-Policy
    blocked on any page visited fails the test."""
    context = chromium.new_context(base_url=base_url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("dialog", lambda dialog: dialog.accept())
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield page
    context.close()
    assert blocked == [], "the Content-Security-Policy blocked something a page needs"


@pytest.fixture
def page(chromium: Any, live_server: str) -> Iterator[Any]:
    with browser_page(chromium, live_server) as page:
        yield page


def browser_login(page: Any, username: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#submit")
    page.wait_for_load_state()


def page_says(page: Any, text: str) -> None:
    """The page shows `text`, waiting for it: a click that navigates returns once the new page is
    committed, and the document read at that moment may still be empty."""
    from playwright.sync_api import expect

    expect(page.locator("body")).to_contain_text(text)


# Every page a browser test checks passes axe-core (no serious or critical violation) and never
# scrolls sideways at these widths (wide tables scroll inside their own box); docs/ui.md.
WIDTHS = (768, 1280)
BLOCKING_IMPACTS = ("serious", "critical")
BODY_OVERFLOW = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


@functools.cache
def _axe() -> Any:
    from axe_playwright_python.sync_playwright import Axe

    return Axe()


def blocking_violations(page: Any) -> list[str]:
    """The serious and critical axe-core violations of the page as it is now, one line each."""
    results = _axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {', '.join(str(n['target']) for n in v['nodes'][:3])}"
        for v in results.response["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


def page_problems(page: Any) -> list[str]:
    """`blocking_violations` at 1,280 px, and each of WIDTHS at which the page scrolls sideways;
    the viewport is 1,280 × 900 afterwards."""
    page.wait_for_load_state()  # a click that navigates returns once the new page is committed
    page.set_viewport_size({"width": 1280, "height": 900})
    problems = blocking_violations(page)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        overflow = page.evaluate(BODY_OVERFLOW)
        if overflow > 0:
            problems.append(f"the page scrolls sideways by {overflow} px at {width} px")
    page.set_viewport_size({"width": 1280, "height": 900})
    return problems


class PageChecks:
    """`page_problems` of every page a test reaches, gathered so that one assertion at the end
    names every page that failed and why."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.checked: list[str] = []
        self.found: dict[str, list[str]] = {}

    def __call__(self, label: str = "") -> None:
        where = f"{len(self.checked) + 1}. {label or self.page.url}"
        self.checked.append(where)
        problems = page_problems(self.page)
        if problems:
            self.found[where] = problems

    def assert_clean(self) -> None:
        report = "\n".join(f"{where}: {'; '.join(found)}" for where, found in self.found.items())
        assert not self.found, f"{len(self.found)} of {len(self.checked)} pages fail:\n{report}"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The number of requests the schemathesis run sent, per role and backend."""
    fuzz = sys.modules.get("tests.test_api_fuzz")
    if fuzz is not None and fuzz.CASES_RUN:
        counts = ", ".join(f"{r} on {b}: {n}" for (r, b), n in sorted(fuzz.CASES_RUN.items()))
        terminalreporter.write_line(f"API fuzz cases per role: {counts}")
