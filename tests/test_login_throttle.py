"""Back-off instead of a lockout: failed logins and bad API tokens slow an account and a client
address down exponentially (shared in the database), admins clear it, failures are audited in
aggregate per address and window."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from factories.callers import caller
from kmc.accounts import throttle
from kmc.accounts.service import authenticate, create_token
from kmc.audit import service as audit
from kmc.audit.models import AuditEntry
from kmc.clock import FixedClock
from kmc.database import db
from tests.conftest import PASSWORD, csrf_token, post_form
from tests.conftest import login as login_as

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock(app):
    fixed = FixedClock(START)
    app.extensions["kmc.clock"] = fixed
    return fixed


def login(client, username, password, address="10.0.0.1"):
    token = csrf_token(client)
    return client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        environ_base={"REMOTE_ADDR": address},
    )


def page(response):
    return response.get_data(as_text=True)


def entries(app, *actions):
    with app.app_context():
        return db.session.scalars(
            select(AuditEntry).where(AuditEntry.action.in_(actions)).order_by(AuditEntry.seq)
        ).all()


def fail(client, username, times, address="10.0.0.1"):
    for _ in range(times):
        assert "invalid username or password" in page(login(client, username, "wrong", address))


def wrong(client, clock, username, times):
    """`times` failed logins, each after the previous wait ended (the last one's wait runs)."""
    for attempt in range(times):
        if attempt:
            clock.at += throttle.ACCOUNT.cap
        fail(client, username, 1)


def test_after_three_failures_an_account_waits_even_for_the_right_password(app, client, clock):
    fail(client, "auditor1", 3)
    refused = page(login(client, "auditor1", PASSWORD))
    assert "Too many failed attempts; try again in 1 seconds" in refused
    assert client.get("/home").status_code == 302
    clock.at += timedelta(seconds=1)
    assert login(client, "auditor1", PASSWORD).headers["Location"].endswith("/home")


def test_the_wait_doubles_with_each_failure_and_is_capped(app, client, clock):
    fail(client, "auditor1", 3)
    waits = []
    for _ in range(12):
        message = page(login(client, "auditor1", "wrong", "10.0.0.9"))
        waits.append(int(message.split("try again in ")[1].split(" ")[0]))
        clock.at += timedelta(seconds=waits[-1])
        fail(client, "auditor1", 1, "10.0.0.9")
    assert waits[:6] == [1, 2, 4, 8, 16, 32]
    assert max(waits) == throttle.ACCOUNT.cap.total_seconds() == 300


def test_waiting_attempts_do_not_extend_the_wait(app, client, clock):
    wrong(client, clock, "auditor1", 4)
    for _ in range(20):
        assert "try again in 2 seconds" in page(login(client, "auditor1", "wrong"))
    clock.at += timedelta(seconds=2)
    assert login(client, "auditor1", PASSWORD).status_code == 302


def test_an_unknown_account_is_throttled_exactly_like_a_known_one(app, client, clock):
    fail(client, "nobody-here", 3)
    fail(client, "auditor1", 3, "10.0.0.2")
    for username, address in (("nobody-here", "10.0.0.1"), ("auditor1", "10.0.0.2")):
        refused = page(login(client, username, "x", address))
        assert "Too many failed attempts; try again in 1 seconds" in refused
        assert "invalid username or password" not in refused


def test_a_success_clears_the_account_and_a_quiet_hour_forgets_failures(app, client, clock):
    fail(client, "auditor1", 2)
    assert login(client, "auditor1", PASSWORD).status_code == 302
    fail(client, "auditor1", 2)
    clock.at += timedelta(hours=1, seconds=1)
    fail(client, "auditor1", 2)
    assert login(client, "auditor1", PASSWORD, "10.0.0.3").status_code == 302


def test_one_address_trying_many_accounts_is_slowed_down(app, client, clock):
    for n in range(10):
        fail(client, f"guess{n}", 1, "192.0.2.7")
    assert "try again in 1 seconds" in page(login(client, "operator1", PASSWORD, "192.0.2.7"))
    # Another address is not slowed down, and the account itself had no failure.
    assert login(client, "operator1", PASSWORD, "192.0.2.8").status_code == 302


def test_a_disabled_account_is_told_so_only_with_the_right_password(app, client, clock):
    admin = app.test_client()
    login_as(admin, "admin1")
    post_form(admin, "/admin/users/auditor1/disable", {}, token_from="/admin/users")
    assert "invalid username or password" in page(login(client, "auditor1", "wrong"))
    told = page(login(client, "auditor1", PASSWORD))
    assert "this account is disabled; ask an admin to enable it" in told
    assert client.get("/home").status_code == 302


def test_failed_logins_are_audited_once_per_address_and_window(app, client, clock):
    fail(client, "operator1", 1, "198.51.100.4")
    fail(client, "nobody", 3, "198.51.100.4")
    login(client, "nobody", "wrong", "198.51.100.4")  # waits: counted, not checked
    fail(client, "auditor1", 1, "198.51.100.5")
    opened = entries(app, "login.failure")
    assert [(e.actor, e.object_type, e.object_id) for e in opened] == [
        ("anonymous", "address", "198.51.100.4"),
        ("anonymous", "address", "198.51.100.5"),
    ]
    assert json.loads(opened[0].details)["username"] == "operator1"
    assert entries(app, "login.failures") == []
    clock.at += throttle.WINDOW
    fail(client, "maker1", 1, "203.0.113.1")  # any later attempt closes the windows that ended
    summaries = entries(app, "login.failures")
    assert len(summaries) == 1
    summary = json.loads(summaries[0].details)
    assert summaries[0].object_id == "198.51.100.4"
    assert summary == {
        "failures": 5,
        "throttled": 1,
        "usernames": ["operator1", "nobody"],
        "window_start": START.isoformat(),
        "window_end": (START + throttle.WINDOW).isoformat(),
    }
    assert PASSWORD not in summaries[0].details and "wrong" not in summaries[0].details
    with app.app_context():
        assert audit.verify().ok


def test_a_successful_login_closes_its_address_window_early(app, client, clock):
    fail(client, "operator1", 2, "198.51.100.9")
    clock.at += timedelta(minutes=3)
    login(client, "operator1", PASSWORD, "198.51.100.9")
    (summary,) = entries(app, "login.failures")
    details = json.loads(summary.details)
    assert details["failures"] == 2
    assert details["window_end"] == (START + timedelta(minutes=3)).isoformat()
    success = entries(app, "login.success")[-1]
    assert json.loads(success.details) == {"address": "198.51.100.9"}


def test_a_single_failure_is_one_audit_row(app, client, clock):
    fail(client, "operator1", 1, "198.51.100.10")
    clock.at += throttle.WINDOW
    login(client, "operator1", PASSWORD, "198.51.100.10")
    assert len(entries(app, "login.failure")) == 1
    assert entries(app, "login.failures") == []


def test_admin_unlocks_an_account_from_the_users_page(app, client, clock):
    wrong(client, clock, "auditor1", 5)
    admin = app.test_client()
    login_as(admin, "admin1", PASSWORD)
    users = page(admin.get("/admin/users"))
    assert "5 failed logins" in users and "/admin/users/auditor1/unlock" in users
    assert admin.post("/admin/users/auditor1/unlock").status_code == 400  # no CSRF token
    done = post_form(admin, "/admin/users/auditor1/unlock", {}, token_from="/admin/users")
    assert "Back-off of auditor1 cleared." in page(admin.get(done.headers["Location"]))
    assert login(client, "auditor1", PASSWORD).status_code == 302
    (entry,) = entries(app, "user.unlock")
    assert (entry.actor, entry.object_id) == ("admin1", "auditor1")
    assert json.loads(entry.details)["failures"] == 5


def test_only_admins_unlock(app, client, clock):
    wrong(client, clock, "auditor1", 4)
    login_as(client, "operator1", PASSWORD)
    response = client.post(
        "/admin/users/auditor1/unlock", data={"csrf_token": csrf_token(client, "/home")}
    )
    assert response.status_code == 403
    assert entries(app, "user.unlock") == []


def test_cli_unlock_clears_the_back_off(app, client, clock, kmc):
    wrong(client, clock, "auditor1", 4)
    listed = json.loads(kmc("user", "list", "--json").output)
    row = next(r for r in listed if r["username"] == "auditor1")
    assert row["failed_logins"] == 4
    assert row["throttled_until"] == (clock.at + timedelta(seconds=2)).isoformat()
    result = kmc("user", "unlock", "--username", "auditor1")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "cleared the back-off of auditor1 (4 failed logins)"
    assert login(client, "auditor1", PASSWORD).status_code == 302
    again = kmc("user", "unlock", "--username", "auditor1")
    assert again.exit_code == 1
    assert again.output.strip() == "kmc: not_throttled: auditor1 has no failed logins to clear"
    assert kmc("user", "unlock", "--username", "ghost").exit_code == 1


def test_bad_bearer_tokens_from_one_address_get_429_with_retry_after(app, client, clock):
    with app.app_context():
        good = create_token(caller("test"), "auditor1", "script").secret
    bad = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    address = {"REMOTE_ADDR": "192.0.2.50"}
    for _ in range(10):
        response = client.get(
            "/api/v1/whoami", headers={"Authorization": f"Bearer {bad}"}, environ_base=address
        )
        assert response.status_code == 401
    refused = client.get(
        "/api/v1/whoami", headers={"Authorization": f"Bearer {bad}"}, environ_base=address
    )
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json == {
        "error": "throttled",
        "message": "Too many failed attempts; try again in 1 seconds",
    }
    # A valid token is not guessable: it is served during the wait (see docs/accounts.md).
    ok = client.get(
        "/api/v1/whoami", headers={"Authorization": f"Bearer {good}"}, environ_base=address
    )
    assert ok.status_code == 200
    clock.at += timedelta(seconds=1)
    after = client.get(
        "/api/v1/whoami", headers={"Authorization": f"Bearer {bad}"}, environ_base=address
    )
    assert after.status_code == 401
    (opened,) = entries(app, "api_token.failure")
    assert opened.object_id == "192.0.2.50"
    assert bad.split("_", 2)[2] not in opened.details
    assert json.loads(opened.details)["token_id"] == good.split("_")[1]


def test_concurrent_failures_are_all_counted(app, clock):
    """Twelve attempts at once for one account from one address: every one is counted, at most
    the three free ones check the password, and the window is opened once (no lost update)."""
    results: list[str] = []
    barrier = threading.Barrier(12)

    def attempt() -> None:
        with app.app_context():
            barrier.wait()
            outcome = authenticate("operator1", "wrong password", "203.0.113.77")
            assert outcome.refusal is not None
            results.append(outcome.refusal.reason)
            db.session.remove()

    threads = [threading.Thread(target=attempt) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12
    assert results.count("bad_credentials") == 3
    assert results.count("throttled") == 9
    assert len(entries(app, "login.failure")) == 1
    with app.app_context():
        assert audit.verify().ok


@pytest.mark.slow
def test_gunicorn_workers_share_one_counter(app, instance):
    """Bad tokens spread over three worker processes meet one counter: ten are checked, then the
    address waits (a counter per process would check up to thirty). A wait that ends during the
    burst lets one more through, hence the small margin; the counter never loses an update."""
    from concurrent.futures import ThreadPoolExecutor
    from http.client import HTTPConnection

    from kmc.accounts.models import LoginThrottle
    from tests.test_keyload_serving import _serving, _workers_of

    def bad_token(port: int) -> tuple[int, str | None]:
        connection = HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/api/v1/whoami", headers={"Authorization": "Bearer kmc_1_x"})
        response = connection.getresponse()
        response.read()
        connection.close()
        return response.status, response.getheader("Retry-After")

    with _serving(instance, "--workers", "3", "--threads", "2") as (port, process):
        assert len(_workers_of(process.pid, 3)) == 3
        with ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(bad_token, [port] * 30))
    checked = [a for a in answers if a[0] == 401]
    assert 10 <= len(checked) <= 12
    assert all(status == 429 and wait for status, wait in answers if status != 401)
    with app.app_context():
        row = db.session.get(LoginThrottle, ("token-address", "127.0.0.1"))
        assert row.failures == len(checked)
        assert row.window_failures == 30
