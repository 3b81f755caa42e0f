"""Account use cases: create users, check passwords with back-off, issue and check API tokens."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from kmc import clock
from kmc.accounts import throttle
from kmc.accounts.models import ApiToken, LoginThrottle, User
from kmc.audit import service as audit
from kmc.database import db, use_case
from kmc.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    KMCError,
    NotAuthenticated,
    NotFound,
    TooManyAttempts,
)
from kmc.listing import Listing, ListRequest, Page, page_of
from kmc.permissions import ROLES, Caller, Permission
from sm_registry import service as registry

MIN_PASSWORD_LENGTH = 12
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,63}$")
TOKEN_PREFIX = "kmc_"
TOKEN_USE_RESOLUTION = timedelta(minutes=1)


def generate_password() -> str:
    """A random one-time password for accounts created without one."""
    return secrets.token_urlsafe(18)


@functools.cache
def _dummy_hash() -> str:
    """Checked against when the username is unknown, so a known and an unknown name cost one scrypt
    computation (made on first use, not at import: `kmc --help` must not pay for it)."""
    return generate_password_hash("timing-equaliser-not-a-password")


def _hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            "weak_password", f"passwords need at least {MIN_PASSWORD_LENGTH} characters"
        )
    return generate_password_hash(password, method="scrypt")


def _binding(role: str, id_man: str | None) -> str | None:
    """The ID_man an account of `role` is bound to: a known one for a manufacturer, else none."""
    if role not in ROLES:
        raise InvalidInput("bad_role", f"role must be one of {', '.join(ROLES)}")
    if role != "manufacturer":
        if id_man:
            raise InvalidInput(
                "manufacturer_not_allowed", "only manufacturer accounts are bound to an ID_man"
            )
        return None
    if not id_man:
        raise InvalidInput(
            "manufacturer_required", "a manufacturer account must be bound to an ID_man"
        )
    id_man = id_man.upper()
    if not registry.manufacturer_exists(id_man):
        raise NotFound("unknown_manufacturer", f"no manufacturer with ID_man {id_man}")
    return id_man


@use_case
def create_user(
    caller: Caller,
    username: str,
    role: str,
    password: str,
    id_man: str | None = None,
    *,
    must_change: bool = False,
) -> User:
    caller.require(Permission.USERS_MANAGE)
    actor = caller.name
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise InvalidInput(
            "bad_username", "usernames are 2-64 of a-z, 0-9, '_', '.', '-', starting alphanumeric"
        )
    id_man = _binding(role, id_man)
    if db.session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict("duplicate_username", f"user {username} already exists")
    user = User(
        username=username,
        role=role,
        id_man=id_man,
        password_hash=_hash_password(password),
        must_change_password=must_change,
        created_at=clock.now(),
    )
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.create", "user", username, {"role": role, "id_man": id_man})
    return user


def find_user(username: str) -> User:
    user = db.session.scalar(select(User).where(User.username == username.strip().lower()))
    if user is None:
        raise NotFound("unknown_user", f"no user named {username}")
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.username)))


USER_LIST = Listing(
    sorts={
        "username": User.username,
        "role": User.role,
        "id_man": User.id_man,
        "active": User.active,
        "created": User.created_at,
    },
    searched=(User.username, User.role, User.id_man),
    tiebreak=(User.username,),
)


def users_page(caller: Caller, asked: ListRequest) -> Page[User]:
    """One page of the accounts (the admin's users page)."""
    caller.require(Permission.USERS_MANAGE)
    return page_of(select(User), USER_LIST, asked)


@dataclass(frozen=True)
class LoginOutcome:
    """The result of a login attempt: the user, or the refusal to show (generic on purpose)."""

    user: User | None
    refusal: KMCError | None = None


@use_case
def authenticate(username: str, password: str, address: str) -> LoginOutcome:
    """Check a login from client `address`. Every outcome is committed with its audit entry and
    the throttle counters (kmc.accounts.throttle), so a refusal is returned rather than raised.

    During a wait (of the account name or of the address) the password is not checked: the
    right one is refused too, or the back-off would not slow a guesser down. Unknown names are
    counted like known ones, and refused with the same message, so nothing tells whether an
    account exists; only the right password of a disabled account is told that it is disabled.
    """
    now = clock.now()
    name = username.strip().lower()
    account = throttle.hold(throttle.ACCOUNT, name)
    place = throttle.hold(throttle.LOGIN_ADDRESS, address)
    outcome = _attempt(name, password, address, account, place, now)
    throttle.sweep(now)
    return outcome


def _attempt(
    name: str,
    password: str,
    address: str,
    account: LoginThrottle,
    place: LoginThrottle,
    now: datetime,
) -> LoginOutcome:
    wait = max(throttle.wait_seconds(account, now), throttle.wait_seconds(place, now))
    if wait:
        throttle.note(place, now, name, "throttled")
        return LoginOutcome(None, TooManyAttempts(wait))
    user = db.session.scalar(select(User).where(User.username == name))
    if user is None:
        check_password_hash(_dummy_hash(), password)  # the same scrypt cost as a known name
        reason = "unknown_user"
    elif not check_password_hash(user.password_hash, password):
        reason = "bad_password"
    elif not user.active:
        audit.record(user.username, "login.refused", "user", user.username, {"reason": "disabled"})
        return LoginOutcome(
            None,
            Forbidden("account_disabled", "this account is disabled; ask an admin to enable it"),
        )
    else:
        throttle.clear(account)
        throttle.close_window(place, now)
        audit.record(user.username, "login.success", "user", user.username, {"address": address})
        return LoginOutcome(user)
    throttle.count_failure(account, now)
    throttle.count_failure(place, now)
    throttle.note(place, now, name, reason)
    return LoginOutcome(None, NotAuthenticated("bad_credentials", "invalid username or password"))


@dataclass(frozen=True)
class Standing:
    """An account's failed logins that still count, and until when it waits (None: it doesn't)."""

    failures: int
    throttled_until: datetime | None


def login_standings() -> dict[str, Standing]:
    """Accounts with failed logins that still count, by username."""
    now = clock.now()
    standings = {
        row.subject: Standing(throttle.failures(row, now), throttle.waiting_until(row, now))
        for row in throttle.accounts()
    }
    return {name: standing for name, standing in standings.items() if standing.failures}


@use_case
def unlock(caller: Caller, username: str) -> Standing:
    """Clear an account's back-off at once (audited); what it was is returned."""
    caller.require(Permission.USERS_MANAGE)
    user = find_user(username)
    now = clock.now()
    row = throttle.hold(throttle.ACCOUNT, user.username)
    before = Standing(throttle.failures(row, now), throttle.waiting_until(row, now))
    if not before.failures:
        raise Conflict("not_throttled", f"{user.username} has no failed logins to clear")
    throttle.clear(row)
    until = before.throttled_until
    audit.record(
        caller.name,
        "user.unlock",
        "user",
        user.username,
        {"failures": before.failures, "throttled_until": until and until.isoformat()},
    )
    return before


@use_case
def change_password(user: User, current: str, new: str) -> User:
    if not check_password_hash(user.password_hash, current):
        raise Forbidden("bad_credentials", "the current password is wrong")
    if hmac.compare_digest(current, new):
        raise InvalidInput("password_unchanged", "the new password must differ from the old one")
    user.password_hash = _hash_password(new)
    user.must_change_password = False
    user.end_sessions()
    audit.record(user.username, "user.password_change", "user", user.username)
    return user


@use_case
def record_logout(user: User) -> None:
    """Ends every session of the user (a copied cookie stops working too)."""
    user.end_sessions()
    audit.record(user.username, "logout", "user", user.username)


def _refuse_own_account(caller: Caller, user: User, change: str) -> None:
    if user.username == caller.name:
        raise Forbidden("own_account", f"you cannot {change} your own account; ask another admin")


def _refuse_losing_an_admin(caller: Caller, user: User, change: str) -> None:
    """An admin may not lock themselves out, and the KMC keeps at least one active admin."""
    _refuse_own_account(caller, user, change)
    if user.role == "admin" and user.active:
        others = db.session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.role == "admin", User.active.is_(True), User.id != user.id)
        )
        if not others:
            raise Conflict("last_admin", f"{user.username} is the last active admin")


@use_case
def set_active(caller: Caller, username: str, active: bool) -> User:
    caller.require(Permission.USERS_MANAGE)
    actor = caller.name
    user = find_user(username)
    if not active:
        _refuse_losing_an_admin(caller, user, "disable")
    user.active = active
    user.end_sessions()
    audit.record(actor, "user.enable" if active else "user.disable", "user", user.username)
    return user


@use_case
def set_role(caller: Caller, username: str, role: str, id_man: str | None = None) -> User:
    """Give an account another role (and, for a manufacturer, its ID_man); its sessions end.
    Demoting an admin follows the rules of disabling one: never oneself, never the last."""
    caller.require(Permission.USERS_MANAGE)
    user = find_user(username)
    id_man = _binding(role, id_man)
    if (role, id_man) == (user.role, user.id_man):
        raise Conflict("role_unchanged", f"{user.username} is already {role}")
    if user.role == "admin" and role != "admin":
        _refuse_losing_an_admin(caller, user, "demote")
    before = user.role
    user.role, user.id_man = role, id_man
    user.end_sessions()
    audit.record(
        caller.name,
        "user.role_change",
        "user",
        user.username,
        {"from": before, "to": role, "id_man": id_man},
    )
    return user


@dataclass(frozen=True)
class ResetPassword:
    """A password reset: `password` is the one-time password, shown to the admin once and
    stored only hashed."""

    user: User
    password: str

    def __repr__(self) -> str:
        return f"ResetPassword(user={self.user.username!r})"


@use_case
def reset_password(caller: Caller, username: str) -> ResetPassword:
    """Replace an account's password by a one-time password it must change at its next login;
    its sessions end (its API tokens are not touched: revoke them on their own)."""
    caller.require(Permission.USERS_MANAGE)
    user = find_user(username)
    _refuse_own_account(caller, user, "reset the password of")
    password = generate_password()
    user.password_hash = _hash_password(password)
    user.must_change_password = True
    user.end_sessions()
    audit.record(caller.name, "user.password_reset", "user", user.username)
    return ResetPassword(user, password)


@dataclass(frozen=True)
class IssuedToken:
    """A freshly created API token; `secret` is shown to its owner once and never stored."""

    token: ApiToken
    secret: str

    def __repr__(self) -> str:
        return f"IssuedToken(id={self.token.id}, name={self.token.name!r})"


def _secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@use_case
def create_token(caller: Caller, username: str, name: str) -> IssuedToken:
    caller.require(Permission.USERS_MANAGE)
    actor = caller.name
    user = find_user(username)
    name = name.strip()
    if not 1 <= len(name) <= 80:
        raise InvalidInput("bad_token_name", "token names are 1-80 characters")
    raw = secrets.token_urlsafe(32)
    token = ApiToken(user=user, name=name, secret_hash=_secret_digest(raw), created_at=clock.now())
    db.session.add(token)
    db.session.flush()
    audit.record(
        actor, "api_token.create", "api_token", str(token.id), {"user": user.username, "name": name}
    )
    return IssuedToken(token, f"{TOKEN_PREFIX}{token.id}_{raw}")


@use_case
def revoke_token(caller: Caller, token_id: int) -> ApiToken:
    caller.require(Permission.USERS_MANAGE)
    actor = caller.name
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise NotFound("unknown_token", f"no API token {token_id}")
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        audit.record(
            actor, "api_token.revoke", "api_token", str(token.id), {"user": token.user.username}
        )
    return token


def list_tokens() -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).order_by(ApiToken.id)))


# Built once: every API request runs it, and `session.get` with a loader option built and
# cached a new query each time, which cost more than the lookup.
_TOKEN_WITH_USER = (
    select(ApiToken).options(joinedload(ApiToken.user)).where(ApiToken.id == bindparam("id"))
)


def user_for_session(session_id: str) -> User | None:
    """The user of a session, unless its sessions were ended since (nonce compared in constant time)."""
    user_id, _, nonce = session_id.partition(":")
    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    if user is None or not hmac.compare_digest(user.session_nonce, nonce):
        return None
    return user


def user_for_token(presented: str, address: str) -> User | None:
    """The active user behind a bearer token, or None; the secret is compared in constant time.

    A bad token is counted against the client `address` (kmc.accounts.throttle); once that
    address must wait, bad tokens are refused with `TooManyAttempts` (429). A valid token is
    served even then: its 256-bit secret cannot be guessed, and the check costs no extra query.
    """
    match = re.fullmatch(rf"{TOKEN_PREFIX}(\d{{1,12}})_([A-Za-z0-9_-]{{20,100}})", presented)
    token = db.session.scalar(_TOKEN_WITH_USER, {"id": int(match.group(1))}) if match else None
    if (
        match is None
        or token is None
        or token.revoked_at is not None
        or not token.user.active
        or not hmac.compare_digest(token.secret_hash, _secret_digest(match.group(2)))
    ):
        wait = _bad_token(address, match.group(1) if match else None)
        if wait:
            raise TooManyAttempts(wait)
        return None
    now = clock.now()
    if token.last_used_at is None or now - token.last_used_at >= TOKEN_USE_RESOLUTION:
        _note_use(token, now)
    return token.user


@use_case
def _bad_token(address: str, token_id: str | None) -> int:
    """Count a bad token from `address` (only its id part is kept); the wait left, if any."""
    now = clock.now()
    place = throttle.hold(throttle.TOKEN_ADDRESS, address)
    wait = throttle.wait_seconds(place, now)
    if not wait:
        throttle.count_failure(place, now)
    throttle.note(place, now, token_id, "throttled" if wait else "bad_token")
    throttle.sweep(now)
    return wait


@use_case
def _note_use(token: ApiToken, now: datetime) -> None:
    """Record when a token was last used, at most once a minute (not a write per request)."""
    token.last_used_at = now
