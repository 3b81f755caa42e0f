"""gunicorn driven from code: a WSGI application served with options given as a dict, no config
file or command line read. Shared by `kmc serve --workers` and `sm-emulator serve`, which may
not import each other (import-linter); this package imports neither.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

Application = Callable[..., Any]  # a WSGI application


def bind_address(host: str, port: int) -> str:
    """gunicorn's `bind` for a host and port (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GunicornFromCode(BaseApplication):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn with `options` (gunicorn setting names) and `application` as the app; a hook
    reaches the application as `worker.app.application`."""

    def __init__(self, application: Application, options: dict[str, Any]) -> None:
        self.application = application
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self) -> Application:
        return self.application
