"""Serving the vending service: gunicorn over TLS, worker processes with threads (gthread).

Why gunicorn: it terminates TLS itself (`certfile`/`keyfile`, and `ca_certs` with
`cert_reqs=CERT_REQUIRED` for mutual TLS), keeps connections alive under the threaded worker,
and forks worker processes so the token engine's Python runs on every core; waitress has no TLS
and one process, cheroot one process. The workers share nothing but the state folder: each
worker's threads group their vends' commits, and the state's writer lock (`sm_emulator.store`)
orders the workers' transactions.

TLS is always on: there is no plain-HTTP mode. Behind a reverse proxy, point the proxy at this
HTTPS port (docs/vending-service.md).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from sm_emulator.api import VendingService
from wsgi_serving import GunicornFromCode, bind_address


def serve(
    app: VendingService,
    *,
    host: str,
    port: int,
    tls_cert: Path,
    tls_key: Path,
    client_ca: Path | None,
    workers: int,
    threads: int,
) -> None:
    """Serve `app` over HTTPS until stopped (SIGTERM / SIGINT)."""
    options: dict[str, Any] = {
        "bind": bind_address(host, port),
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "proc_name": "sm-emulator",
        "certfile": str(tls_cert),
        "keyfile": str(tls_key),
        "keepalive": 30,
        "accesslog": None,
    }
    if client_ca is not None:
        options |= {"ca_certs": str(client_ca), "cert_reqs": ssl.CERT_REQUIRED}
    GunicornFromCode(app, options).run()
