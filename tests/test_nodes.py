"""Two KMC nodes: two `kmc serve` processes with their own instance folders on one PostgreSQL
database and one token. Everything a node needs comes from the database and the token."""

from __future__ import annotations

import http.client
import json
import threading
from http.cookies import SimpleCookie
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from factories.csr import make_csr
from factories.keys import SGC, api_headers
from factories.registry import Device
from key_load.models import KeyLoadIssue
from key_load_protocol import KeyIdentity, key_check_value, open_eklf
from kmc import pki
from kmc.audit import service as audit
from kmc.audit.models import AuditEntry
from kmc.database import db
from tests.conftest import _CSRF, PASSWORD, kmc_server

pytestmark = pytest.mark.slow


@pytest.fixture
def backend() -> str:
    from tests.conftest import _postgres_reachable, require

    problem = _postgres_reachable()
    require(problem is None, problem or "")
    return "postgres"


@pytest.fixture
def keystore() -> str:
    return "pkcs11"


def _call(
    port: int, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes, http.client.HTTPResponse]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    connection.request(method, path, body=data, headers=headers or {})
    response = connection.getresponse()
    content = response.read()
    connection.close()
    return response.status, content, response


def _api(port: int, headers: dict[str, str], method: str, path: str, body: Any = None) -> Any:
    status, content, _ = _call(
        port, method, f"/api/v1{path}", body, {**headers, "Content-Type": "application/json"}
    )
    assert status in (200, 201), (path, status, content)
    return json.loads(content)


def _session_cookie(response: http.client.HTTPResponse) -> str:
    cookie = SimpleCookie()
    for header in response.headers.get_all("Set-Cookie") or []:
        cookie.load(header)
    return "; ".join(f"{name}={morsel.value}" for name, morsel in cookie.items())


def test_two_nodes_on_one_database_and_one_token_act_as_one_kmc(app, instance, tmp_path):
    node_b = tmp_path / "node-b"  # an empty folder: no certificate, no secret, no key
    node_b.mkdir(mode=0o700)
    env_b = {**instance.env(), "KMC_INSTANCE": str(node_b)}
    operator = api_headers(app, "operator1")
    admin = api_headers(app, "admin1")
    with (
        kmc_server(instance.env(), tmp_path / "a.log", "--workers", "2") as (port_a, _),
        kmc_server(env_b, tmp_path / "b.log") as (port_b, _),
    ):
        assert sorted(p.name for p in node_b.iterdir()) == []

        # A login form from node A is accepted by node B, and its session works on node A.
        _, page, response = _call(port_a, "GET", "/login")
        token = _CSRF.search(page.decode())
        assert token
        form = f"username=admin1&password={PASSWORD}&csrf_token={token.group(1)}"
        status, _, response = _call(
            port_b,
            "POST",
            "/login",
            form.encode(),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": _session_cookie(response),
            },
        )
        assert status == 302 and "/login" not in response.getheader("Location", "")
        status, _, _ = _call(port_a, "GET", "/home", headers={"Cookie": _session_cookie(response)})
        assert status == 200

        # A key generated through node A; an SM registered and authorised through node B.
        _api(port_b, operator, "POST", "/supply-groups", {"sgc": SGC, "name": "Node test"})
        generated = _api(
            port_a,
            operator,
            "POST",
            "/keys",
            {"sgc": SGC, "krn": 1, "kt": 1, "dkga": "04", "eas": ["07"], "base_date": 2014,
             "ken": 255},
        )  # fmt: skip
        smid = "600727000901"
        device_key = ec.generate_private_key(ec.SECP384R1())
        csr = make_csr(smid, "1A2B", device_key).decode()
        _api(port_b, admin, "POST", "/sms", {"kind": "virtual", "csr": csr, "id_man": "1A2B"})
        _api(port_b, admin, "POST", f"/sms/{smid}/approve", {"reason": "node test"})
        chain = _api(port_b, admin, "GET", f"/sms/{smid}/certificate")["certificate_chain_pem"]
        _api(port_b, operator, "POST", f"/keys/{SGC}/1/1/authorisations", {"smid": smid})
        device = Device(smid, device_key, x509.load_pem_x509_certificates(chain.encode())[0])

        # The SM loads the key through node A, then races requests across both nodes.
        load = {**operator, "Content-Type": "application/cms"}
        wanted = (KeyIdentity(SGC, 1, 1),)
        status, eklf, _ = _call(port_a, "POST", "/api/v1/keyload", device.request(wanted), load)
        assert status == 200, eklf
        with app.app_context():
            root = pki.current().root.certificate
        loaded = open_eklf(eklf, trusted_root=root, sm_private_key=device_key)
        assert loaded.keys[0].identity == wanted[0]
        kcv = key_check_value(loaded.keys[0].dkga, loaded.keys[0].key_value).hex().upper()
        assert kcv == generated["key"]["kcv"]
        raced = [device.request(wanted) for _ in range(5)]
        statuses: list[int] = []
        barrier = threading.Barrier(2 * len(raced))

        def post(port: int, der: bytes) -> None:
            barrier.wait()
            statuses.append(_call(port, "POST", "/api/v1/keyload", der, load)[0])

        threads = [
            threading.Thread(target=post, args=(port, der))
            for der in raced
            for port in (port_a, port_b)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)

    assert sorted(statuses) == [200] * len(raced) + [409] * len(raced)
    with app.app_context():
        issued = db.session.scalars(
            select(KeyLoadIssue.sequence).where(KeyLoadIssue.smid == smid)
        ).all()
        assert sorted(issued) == list(range(1, len(raced) + 2))
        assert audit.verify().ok
        seqs = db.session.scalars(select(AuditEntry.seq).order_by(AuditEntry.seq)).all()
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert db.session.scalar(select(func.count()).select_from(AuditEntry)) == len(seqs)
    assert sorted(p.name for p in node_b.iterdir()) == []
