"""The STS Key Management Centre: the Flask service (`kmc.app`) and its core.

Importing `kmc` (or any core module) does no work and loads no web framework: the app is built
only when `create_app` is called, so pure modules below it stay importable on their own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the KMC app (see `kmc.app.create_app`); the `flask --app kmc` entry point."""
    from kmc.app import create_app as build

    return build(test_config)
