"""Serving the vending service: granian over TLS, worker processes with threads.

Why granian: its HTTP/1.1 (and HTTP/2) parsing and TLS (rustls) run in Rust, outside the GIL,
so a request costs the Python of our application and little else; gunicorn parses HTTP in
Python, which cost about a third of a credit vend's server CPU (docs/vending-service.md has the
figures). It terminates TLS itself, with mutual TLS (`ssl_ca` + `ssl_client_verify`), keeps
connections alive, and runs `workers` processes, each calling the WSGI application from
`threads` threads, so the token engine's Python runs on every core. waitress has no TLS and one
process; cheroot one process. The KMC keeps waitress / gunicorn (`kmc.serving`): its requests
are few and heavy, where this service's are many and light.

Each worker builds its own application from `Settings` (picklable, so the workers may be
started by fork or by spawn); the workers share nothing but the state folder: each worker's
threads group their vends' commits, and the state's writer lock (`sm_emulator.store`) orders
the workers' transactions.

A worker process that dies is replaced by the master (`respawn_failed_workers`); granian's
default would stop the whole service with it.

TLS is always on: there is no plain-HTTP mode. Behind a reverse proxy, point the proxy at this
HTTPS port (docs/vending-service.md).
"""

from __future__ import annotations

import functools
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from sm_emulator.api import VendingService
from sm_emulator.bearer import BearerTokens
from sm_emulator.clock import from_environment
from sm_emulator.errors import InvalidRequest
from sm_emulator.online import Kmc

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
# granian reads the TLS key from a file, as an unencrypted PKCS#8 PEM only.
PKCS8_HEADER = b"-----BEGIN PRIVATE KEY-----"


@dataclass(frozen=True)
class Settings:
    """What a worker needs to build the service (paths and strings: picklable)."""

    state: Path
    tokens_file: Path | None = None
    ea07_tables: str | None = None
    kmc_url: str | None = None
    kmc_ca: Path | None = None


def _log_to_stderr() -> None:
    """The service's own log lines (faults, defects) on stderr with time, level and worker PID;
    granian's logging setup leaves the application's loggers without a handler."""
    logger = logging.getLogger("sm_emulator")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def build(settings: Settings) -> VendingService:
    """The WSGI application over `settings.state`, clock from the environment."""
    _log_to_stderr()
    return VendingService(
        settings.state,
        clock=from_environment(),
        tokens=None if settings.tokens_file is None else BearerTokens.read(settings.tokens_file),
        ea07_tables=settings.ea07_tables,
        kmc=None if settings.kmc_url is None else Kmc(settings.kmc_url, settings.kmc_ca),
    )


def check_tls_key(path: Path) -> None:
    """`InvalidRequest` (`tls_key_format`) unless `path` holds an unencrypted PKCS#8 PEM key."""
    if not path.read_bytes().lstrip().startswith(PKCS8_HEADER):
        raise InvalidRequest(
            "tls_key_format",
            f"{path}: the TLS key must be an unencrypted PKCS#8 PEM ('BEGIN PRIVATE KEY'); "
            "convert it with: openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pk8",
        )


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    tls_cert: Path,
    tls_key: Path,
    client_ca: Path | None,
    workers: int,
    threads: int,
) -> None:
    """Serve the application over HTTPS until stopped (SIGTERM / SIGINT)."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, SSLProtocols
    from granian.log import LogLevels

    check_tls_key(tls_key)
    build(settings)  # fail here, in one line, not in every worker
    server = Granian(
        "sm_emulator.serving:build",  # a label: the workers load through `target_loader`
        address=host,
        port=port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        workers=workers,
        blocking_threads=threads,
        websockets=False,
        ssl_cert=tls_cert,
        ssl_key=tls_key,
        ssl_protocol_min=SSLProtocols.tls12,
        ssl_ca=client_ca,
        ssl_client_verify=client_ca is not None,
        log_level=LogLevels.warning,
        log_access=False,
        respawn_failed_workers=True,
    )
    server.serve(target_loader=functools.partial(build, settings), wrap_loader=False)
