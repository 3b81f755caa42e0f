"""Serving the KMC over HTTP: waitress in one process, or gunicorn with several worker processes.

One Python process runs one request's Python code at a time (the GIL), so a single waitress
process queues concurrent key-load requests however many threads it has. `kmc serve --workers N`
forks N gunicorn workers, each with its own threads, behind one listening socket; the database
is the only thing they share. Each worker gets fresh database connections (see `_post_fork`).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from kmc.database import db


class _GunicornFromCode(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn with `options` (gunicorn setting names) and `application` as the app, no config
    file or command line read; a hook reaches the application as `worker.app.application`."""

    def __init__(self, application: Flask, options: dict[str, Any]) -> None:
        self.application = application
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Flask:
        return self.application


def serve_single_process(app: Flask, host: str, port: int, threads: int) -> None:
    """waitress, one process: the default, and all a workstation or a small KMC needs."""
    from waitress import serve

    serve(app, host=host, port=port, threads=threads, ident="kmc")


def _post_fork(_arbiter: Any, worker: Any) -> None:
    """Forget the pool inherited from the master: a connection must never be used by two processes.

    `close=False` leaves the master's connections (if any) alone rather than closing sockets
    the master still owns; the worker opens its own on first use.
    """
    with worker.app.application.app_context():
        db.engine.dispose(close=False)


# One line per request: who, when, what, status, size, and the worker's process id.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(r)s" %(s)s %(B)s pid=%(p)s'


def serve_workers(
    app: Flask, host: str, port: int, workers: int, threads: int, access_log: str | None = None
) -> None:
    """gunicorn: `workers` processes forked from this one, each with `threads` threads (gthread);
    `access_log` (a file, or "-" for stdout) logs each request with the worker that answered."""
    options: dict[str, Any] = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",  # IPv6 in brackets
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "proc_name": "kmc",
        "post_fork": _post_fork,
    }
    if access_log:
        options.update(accesslog=access_log, access_log_format=ACCESS_LOG_FORMAT)
    _GunicornFromCode(app, options).run()
