"""Forms mark the field that is wrong (is-invalid, the message beside it), whether the form's own
validation or the service refused it, and explain their fields (help text)."""

from __future__ import annotations

import html
import re

from factories.keys import SGC, add_key
from tests.conftest import login, post_form


def marked(page: str, field_id: str) -> str | None:
    """The message shown beside the marked field `field_id`, or None when it is not marked."""
    found = re.search(
        rf'<(?:input|select)[^>]*class="[^"]*is-invalid[^"]*"[^>]*id="{field_id}"[^>]*>\s*'
        r'(?:(?:(?!<div).)*?</select>\s*)?<div class="invalid-feedback[^"]*">([^<]*)</div>',
        html.unescape(page),
        re.S,
    )
    return found.group(1) if found else None


def test_a_duplicate_sgc_refused_by_the_service_marks_the_sgc_field(app, client):
    add_key(app, 1)  # adds the supply group SGC too
    login(client, "operator1")
    page = post_form(
        client, "/keys/supply-groups", {"group-sgc": SGC, "group-name": "Again"}
    ).get_data(as_text=True)
    assert marked(page, "group-sgc") == f"supply group {SGC} already exists"
    assert marked(page, "group-name") is None and 'value="Again"' in page  # what was typed stays


def test_ea11_with_dkga02_marks_the_ea_field(app, client):
    add_key(app, 1)
    login(client, "operator1")
    form = {"key-sgc": SGC, "key-krn": "2", "key-kt": "1", "key-dkga": "02", "key-eas": "11",
            "key-base_date": "2014", "key-ken": "1"}  # fmt: skip
    page = post_form(client, "/keys/generate", form).get_data(as_text=True)
    assert "EA 11 needs DKGA 04" in (marked(page, "key-eas") or "")


def test_an_unknown_smid_marks_the_smid_field_of_the_authorisation_form(app, client):
    add_key(app, 1)
    login(client, "operator1")
    page = post_form(
        client, f"/keys/{SGC}/1/1/authorise", {"smid": "9999"}, token_from=f"/keys/{SGC}/1/1"
    ).get_data(as_text=True)
    assert "9999" in (marked(page, "smid") or "")
    page = post_form(
        client, f"/keys/{SGC}/1/1/authorise", {"smid": ""}, token_from=f"/keys/{SGC}/1/1"
    ).get_data(as_text=True)
    assert marked(page, "smid") == "This field is required." and "Check the marked field" in page


def test_form_fields_carry_help_text(app, client):
    add_key(app, 1)
    login(client, "operator1")
    keys = client.get("/keys/").get_data(as_text=True)
    assert "Key revision number, 1 to 9" in keys and "Key expiry number" in keys
    assert "Issue-until time" in client.get(f"/keys/{SGC}/1/1").get_data(as_text=True)
    assert "cannot be changed later" in client.get("/keys/supply-groups").get_data(as_text=True)
    login(client, "admin1")
    assert "cannot be changed later" in client.get("/registry/manufacturers").get_data(as_text=True)
    assert "serialNumber = the SMID" in client.get("/registry/register").get_data(as_text=True)


def test_objects_link_to_each_other(app, client):
    from factories.keys import authorise
    from factories.registry import new_device

    new_device(app, "4242")
    add_key(app, 1)
    authorise(app, "4242", 1)
    login(client, "operator1")
    sm = client.get("/registry/sms/4242").get_data(as_text=True)
    assert 'href="/keys/authorisations?q=4242"' in sm and 'href="/keyload/?q=4242"' in sm
    assert 'href="/registry/manufacturers/' in sm
    key = client.get(f"/keys/{SGC}/1/1").get_data(as_text=True)
    assert 'href="/registry/sms/4242"' in key and f'href="/keys/supply-groups/{SGC}"' in key
    listed = client.get("/keys/authorisations?q=4242").get_data(as_text=True)
    assert 'href="/registry/sms/4242"' in listed and f'href="/keys/{SGC}/1/1"' in listed
