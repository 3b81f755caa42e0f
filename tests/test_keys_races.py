"""Concurrent lifecycle changes of one vending key: `compromised` is final, whoever commits first."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from factories.callers import caller
from factories.keys import SGC
from kmc.database import db
from kmc.errors import Conflict
from tests.test_keys_store import GENERATE_ARGS, _ok
from vending_keys import service as keys
from vending_keys.domain import key_identity
from vending_keys.models import VendingKey


def _wait_for_a_lock_wait(app, timeout=10.0):
    with app.app_context(), db.engine.connect() as probe:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = probe.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            if waiting:
                return
            probe.rollback()
            time.sleep(0.02)
    raise AssertionError("the deactivation never waited for the compromising transaction")


def test_deactivation_racing_a_compromise_does_not_undo_it(app, kmc, backend):
    if backend == "sqlite":
        pytest.skip("SQLite writers hold the write lock from BEGIN IMMEDIATE: nobody gets in")
    _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North"))
    _ok(kmc(*GENERATE_ARGS))
    outcome: list[object] = []

    def deactivate():
        with app.app_context():
            try:
                outcome.append(
                    keys.change_key_state(
                        caller("operator2"), key_identity(SGC, 1, 1), "deactivate", "old"
                    )
                )
            except Conflict as refused:
                outcome.append(refused)

    with app.app_context(), db.engine.connect() as compromising:
        # Another KMC process has marked the key compromised and not yet committed.
        compromising.execute(
            text("UPDATE vending_keys SET state = 'compromised', state_reason = 'leak'")
        )
        racer = threading.Thread(target=deactivate)
        racer.start()
        try:
            _wait_for_a_lock_wait(app)
        finally:
            compromising.commit()
            racer.join(timeout=30)
    assert not racer.is_alive()
    (result,) = outcome
    assert isinstance(result, Conflict) and result.reason == "key_compromised"
    with app.app_context():
        key = db.session.scalars(select(VendingKey)).one()
        assert (key.state, key.state_reason) == ("compromised", "leak")
