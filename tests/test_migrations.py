"""The Alembic migrations build exactly the schema the models describe, on every backend."""

from __future__ import annotations

import logging

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from kmc.database import db


def test_migrations_match_the_models(app):
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_running_the_migrations_in_process_silences_no_logger(app):
    """Alembic's env reads its logging section with `fileConfig`, which by default disables
    every logger that exists already: the KMC's own (its 500 handler logs through
    `app.logger`) and any library's, in the process that migrates."""
    early = logging.getLogger("kmc.tests.created_before_the_migration")
    with app.app_context():
        upgrade(directory=app.extensions["migrate"].directory)
    assert not early.disabled and not app.logger.disabled
