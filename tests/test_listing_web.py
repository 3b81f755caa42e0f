"""Every list page pages, sorts and searches the same way (kmc.listing), through the test client."""

from __future__ import annotations

import datetime as dt
import hashlib
import re

import pytest

from factories.keys import SGC, add_key, authorise
from factories.registry import new_device
from kmc.audit import service as audit
from kmc.database import db, use_case
from kmc.listing import MAX_PER_PAGE
from sm_registry.models import SecurityModule
from tests.conftest import login

# (path, who may see it, the table's id) of every list page.
LISTS = {
    "/registry/": ("auditor1", "sms"),
    "/registry/manufacturers": ("auditor1", "manufacturers"),
    "/keys/": ("operator1", "keys"),
    "/keys/supply-groups": ("operator1", "supply-groups"),
    "/keys/authorisations": ("operator1", "authorisations"),
    "/keyload/": ("operator1", "issues"),
    "/keys/approvals": ("operator1", "approvals"),
    "/audit/": ("auditor1", "audit-entries"),
    "/admin/users": ("admin1", "users"),
}
_SORT_KEY = re.compile(r'data-sort="([a-z_]+)"')
_ROW_SMID = re.compile(r'<tr data-smid="([0-9]+)"')


@use_case
def _insert_sms(count, first):
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for n in range(first, first + count):
        key = f"key {n}".encode()
        db.session.add(
            SecurityModule(
                smid=str(n),
                id_man="1A2B",
                kind="virtual",
                state="pending",
                public_key_der=key,
                public_key_sha256=hashlib.sha256(key).hexdigest(),
                csr_der=b"",
                registered_at=at + dt.timedelta(minutes=n),
                registered_by="maker1" if n % 2 else "admin1",
            )
        )


def add_sms(app, count, first=7000):
    """`count` pending SMs of manufacturer 1A2B straight into the table (no CSR round trip)."""
    with app.app_context():
        _insert_sms(count, first)


def smids(response):
    assert response.status_code == 200
    return _ROW_SMID.findall(response.get_data(as_text=True))


def test_the_sm_list_pages_with_a_bounded_page_size(app, client):
    add_sms(app, 60)
    login(client, "auditor1")
    first = smids(client.get("/registry/"))
    assert first == [str(n) for n in range(7000, 7025)]
    assert "1–25 of 60 SMs" in client.get("/registry/").get_data(as_text=True)
    assert smids(client.get("/registry/?page=3")) == [str(n) for n in range(7050, 7060)]
    # A page past the end shows the last page; nonsense is the first.
    assert smids(client.get("/registry/?page=99")) == [str(n) for n in range(7050, 7060)]
    assert smids(client.get("/registry/?page=-1&per_page=x"))[0] == "7000"
    assert len(smids(client.get("/registry/?per_page=10"))) == 10
    add_sms(app, MAX_PER_PAGE, first=8000)
    assert len(smids(client.get("/registry/?per_page=100000"))) == MAX_PER_PAGE


def test_the_sm_list_sorts_by_a_whitelisted_column_only(app, client):
    add_sms(app, 30)
    login(client, "auditor1")
    assert smids(client.get("/registry/?sort=smid&dir=desc"))[:2] == ["7029", "7028"]
    assert smids(client.get("/registry/?sort=registered&dir=desc"))[0] == "7029"
    by_uploader = smids(client.get("/registry/?sort=uploader&per_page=100"))
    assert by_uploader[:15] == [str(n) for n in range(7000, 7030, 2)]  # admin1 before maker1
    # Not a sort key (a column people may not sort by, or SQL): the default order.
    for evil in ("public_key_der", "smid; DROP TABLE users", "__class__"):
        assert smids(client.get("/registry/", query_string={"sort": evil}))[0] == "7000"
    page = client.get("/registry/?sort=smid&dir=desc").get_data(as_text=True)
    assert 'aria-sort="descending"' in page


def test_the_search_matches_any_part_case_insensitively_and_wildcards_are_literal(app, client):
    add_sms(app, 30)
    login(client, "auditor1")
    assert smids(client.get("/registry/?q=701")) == [str(n) for n in range(7010, 7020)]
    assert len(smids(client.get("/registry/?q=MAKER1&per_page=100"))) == 15
    assert smids(client.get("/registry/?q=%25")) == []  # "%" is a character, not "anything"
    assert smids(client.get("/registry/?q=_")) == []
    # The SMID filter matches part of an SMID too ("7000" used to find only 7000 exactly).
    assert smids(client.get("/registry/?smid=02")) == ["7002"] + [str(n) for n in range(7020, 7030)]
    # The query string keeps the search through sorting and paging.
    page = client.get("/registry/?q=70&per_page=10").get_data(as_text=True)
    assert "q=70" in page.split('aria-label="Pages of SMs"')[1]


def test_a_manufacturer_pages_through_its_own_sms_only(app, client):
    add_sms(app, 5)
    login(client, "maker2")
    assert smids(client.get("/registry/?q=70")) == []


@pytest.mark.parametrize("path", list(LISTS))
def test_every_list_page_sorts_both_ways_by_each_of_its_columns(app, client, path):
    new_device(app, "4242")
    add_key(app, 1)
    authorise(app, "4242", 1)
    username, table = LISTS[path]
    login(client, username)
    page = client.get(path).get_data(as_text=True)
    assert f'id="{table}"' in page and 'role="search"' in page
    assert re.search(r'<label class="form-label mb-0" for="[a-z-]+-q">Search</label>', page)
    keys = _SORT_KEY.findall(page)
    assert keys, f"{path} has no sortable column"
    for key in keys:
        for direction in ("asc", "desc"):
            answer = client.get(path, query_string={"sort": key, "dir": direction, "q": "a"})
            assert answer.status_code == 200, (path, key, direction)


def test_the_audit_log_finds_part_of_an_actor_and_pages_newest_first(app, client):
    with app.app_context():
        use_case(
            lambda: [audit.record("oliver", "test.note", "note", str(n), {}) for n in range(30)]
        )()
    login(client, "auditor1")
    page = client.get("/audit/?actor=oli&per_page=10").get_data(as_text=True)
    assert "1–10 of 30 entries" in page
    assert page.index("note 29") < page.index("note 20")
    assert "note 19" not in page
    assert "note 19" in client.get("/audit/?actor=oli&per_page=10&page=2").get_data(as_text=True)
    assert "of 30 entries" in client.get("/audit/?q=OLIV").get_data(as_text=True)


def test_keys_authorisations_and_supply_groups_search(app, client):
    new_device(app, "4242")
    add_key(app, 1)
    add_key(app, 2)
    authorise(app, "4242", 2)
    login(client, "operator1")
    keys = client.get("/keys/?sort=krn&dir=desc").get_data(as_text=True)
    assert keys.index("/keys/600727/2/1") < keys.index("/keys/600727/1/1")
    assert "No key matches." in client.get("/keys/?q=nothing-like-this").get_data(as_text=True)
    listed = client.get("/keys/authorisations?q=4242").get_data(as_text=True)
    assert 'data-smid="4242"' in listed and "/keys/600727/2/1" in listed
    assert 'data-smid="4242"' not in client.get("/keys/authorisations?q=9999").get_data(
        as_text=True
    )
    groups = client.get(f"/keys/supply-groups?q={SGC[2:]}").get_data(as_text=True)
    assert f'data-sgc="{SGC}"' in groups


def test_users_list_searches_by_role(client):
    login(client, "admin1")
    page = client.get("/admin/users?q=manufacturer").get_data(as_text=True)
    assert "maker1" in page and "maker2" in page and "operator1" not in page
