"""No secret, and no hash of a secret, in any log line at any level (docs/security.md, "Logs").

Representative flows run with every logger at DEBUG, SQLAlchemy's statement log included; the
captured text is then searched for each secret the flows handled."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import select

from factories.keys import SGC, add_key, authorise
from factories.registry import new_device
from key_load_protocol import KeyIdentity
from kmc.accounts.models import ApiToken, User
from kmc.database import db
from tests.conftest import PASSWORD, csrf_token, login, post_form
from vending_keys import service as keys
from vending_keys.domain import key_identity

WRONG_PASSWORD = "not the password of anyone 7f3a"


@pytest.fixture
def every_logger_at_debug(app: Flask, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Every logger enabled at DEBUG (Alembic's logging file, read by the migrations, disables
    the loggers it finds and sets SQLAlchemy's to WARN), restored afterwards."""
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    for logger in loggers:
        logger.disabled = False
        logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    yield
    for logger, level, disabled in saved:
        logger.setLevel(level)
        logger.disabled = disabled


@pytest.mark.usefixtures("every_logger_at_debug")
def test_no_secret_or_hash_of_a_secret_reaches_any_log(app, client, caplog):
    client.post(
        "/login",
        data={"username": "admin1", "password": WRONG_PASSWORD, "csrf_token": csrf_token(client)},
    )
    login(client, "admin1")
    page = post_form(
        client, "/admin/tokens", {"username": "operator1", "name": "logs"}, "/admin/tokens"
    )
    match = re.search(r'<code id="new-token">([^<]+)</code>', page.get_data(as_text=True))
    assert match, "the token page shows the new token once"
    secret = match.group(1)
    add_key(app, 1)
    device = new_device(app, "1001")
    authorise(app, device.smid, 1)
    loaded = client.post(
        "/api/v1/keyload",
        data=device.request((KeyIdentity(SGC, 1, 1),)),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/cms"},
    )
    assert loaded.status_code == 200, loaded.get_json()
    with app.app_context():
        key_value = keys.open_key(keys.find_key(key_identity(SGC, 1, 1))).hex()
        stored = {
            **{
                f"token hash {n}": h
                for n, h in enumerate(db.session.scalars(select(ApiToken.secret_hash)))
            },
            **{
                f"password hash {n}": h
                for n, h in enumerate(db.session.scalars(select(User.password_hash)))
            },
        }
    secrets = {
        "the API token secret": secret,
        "the password": PASSWORD,
        "a wrong password": WRONG_PASSWORD,
        "the vending key (hex)": key_value,
        "the vending key (HEX)": key_value.upper(),
        **stored,
    }
    logged = caplog.text
    assert "INSERT INTO api_tokens" in logged, "the statement log was not captured"
    assert [what for what, value in secrets.items() if value in logged] == []
