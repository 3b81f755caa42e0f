"""The audit log shows people a label for each action, the raw action kept beside it."""

from __future__ import annotations

import re

from factories.registry import new_device
from kmc.audit import service as audit
from kmc.audit.labels import ACTION_LABELS
from kmc.database import use_case
from tests.conftest import login


def _cell(page: str, action: str) -> str:
    return re.search(rf'<td><span title="{re.escape(action)}">(.*?)</td>', page, re.S).group(1)


def test_the_log_shows_each_action_by_its_label_with_the_raw_name_beside_it(app, client):
    new_device(app, "4242")
    login(client, "auditor1")
    page = client.get("/audit/").get_data(as_text=True)
    approved = _cell(page, "sm.approve")
    assert approved.startswith("SM approved</span>") and "<code>sm.approve</code>" in approved
    assert _cell(page, "login.success").startswith("Logged in</span>")
    # The filter still takes the raw name (or part of it).
    filtered = client.get("/audit/?action=sm.appr").get_data(as_text=True)
    assert "SM approved" in filtered and "SM registered" not in filtered


def test_every_label_is_distinct_and_an_action_without_one_shows_as_it_is(app, client):
    assert len(set(ACTION_LABELS.values())) == len(ACTION_LABELS)
    with app.app_context():
        use_case(lambda: audit.record("test", "test.note", "test", "1", {}))()
    login(client, "auditor1")
    assert _cell(client.get("/audit/").get_data(as_text=True), "test.note") == "test.note</span>"
