"""The key-store pages' forms: every value the service accepts can be entered, and refusals are
shown as messages."""

from __future__ import annotations

import html
import json
import re

from factories.keys import SGC
from tests.conftest import login, post_form
from tests.test_keys_store import _ok

KEY_FORM = {"key-sgc": SGC, "key-krn": "1", "key-kt": "1", "key-dkga": "04", "key-eas": "07",
            "key-base_date": "2014", "key-ken": "255"}  # fmt: skip


def _generate(client, kmc, **changes):
    _ok(kmc("sgc", "add", "--sgc", SGC, "--name", "North"))
    login(client, "operator1")
    answer = post_form(client, "/keys/generate", {**KEY_FORM, **changes}, "/keys/")
    if answer.status_code == 302:
        return html.unescape(client.get("/keys/").get_data(as_text=True))
    assert answer.status_code == 200  # refused: the form again, the wrong field marked
    return html.unescape(answer.get_data(as_text=True))


def test_ken_zero_can_be_entered(client, kmc):
    page = _generate(client, kmc, **{"key-ken": "0"})
    assert "This field is required" not in page
    (key,) = json.loads(_ok(kmc("key", "list", "--json")).output)
    assert key["ken"] == 0


def test_krn_zero_is_refused_as_out_of_range_not_as_missing(client, kmc):
    page = _generate(client, kmc, **{"key-krn": "0"})
    assert "Check the marked field: KRN." in page
    assert re.search(
        r'<input class="form-control is-invalid" id="key-krn"[^>]*value="0"[^>]*>\s*'
        r'<div class="invalid-feedback[^"]*">Number must be between 1 and 9.</div>',
        page,
    )
    assert json.loads(_ok(kmc("key", "list", "--json")).output) == []


def test_compromise_needs_the_key_identity_typed(client, kmc):
    from vending_keys.domain import key_identity

    _generate(client, kmc)
    identity = str(key_identity(SGC, 1, 1))
    path = f"/keys/{SGC}/1/1"
    post_form(client, f"{path}/compromise", {"reason": "leaked", "confirm": "yes"}, path)
    page = html.unescape(client.get(path).get_data(as_text=True))
    assert f"type {identity} to confirm" in page
    (key,) = json.loads(_ok(kmc("key", "list", "--json")).output)
    assert key["state"] == "active"
    post_form(client, f"{path}/compromise", {"reason": "leaked", "confirm": identity}, path)
    (key,) = json.loads(_ok(kmc("key", "list", "--json")).output)
    assert key["state"] == "compromised"
