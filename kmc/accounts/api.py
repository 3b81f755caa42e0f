"""API routes about the caller and accounts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from kmc.access import allow, current_actor
from kmc.accounts import service
from kmc.accounts.models import User
from kmc.accounts.schemas import Account, Accounts
from kmc.api.schema import operation
from kmc.permissions import Permission


def user_json(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "id_man": user.id_man,
        "active": user.active,
    }


@allow(Permission.OWN_ACCOUNT)
@operation("The account behind the bearer token", responses={200: Account})
def whoami() -> dict[str, Any]:
    user = current_actor()
    assert user is not None
    return user_json(user)


@allow(Permission.USERS_READ)
@operation("All accounts", responses={200: Accounts})
def users() -> dict[str, Any]:
    return {"users": [user_json(u) for u in service.list_users()]}


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/whoami", "whoami", whoami)
    bp.add_url_rule("/users", "users", users)
