"""API routes about the caller and accounts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from kmc.access import allow, current_actor
from kmc.accounts import service
from kmc.accounts.models import User
from kmc.api.openapi import error_responses, json_response
from kmc.permissions import ROLES


def user_json(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "id_man": user.id_man,
        "active": user.active,
    }


@allow(*ROLES)
def whoami() -> dict[str, Any]:
    user = current_actor()
    assert user is not None
    return user_json(user)


@allow("admin", "auditor")
def users() -> dict[str, Any]:
    return {"users": [user_json(u) for u in service.list_users()]}


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/whoami", "whoami", whoami)
    bp.add_url_rule("/users", "users", users)


_USER = {
    "type": "object",
    "properties": {
        "username": {"type": "string"},
        "role": {"type": "string", "enum": list(ROLES)},
        "id_man": {"type": ["string", "null"]},
        "active": {"type": "boolean"},
    },
}
PATHS = {
    "/api/v1/whoami": {
        "get": {
            "summary": "The account behind the bearer token",
            "responses": {"200": json_response("The caller", _USER), **error_responses(401)},
        }
    },
    "/api/v1/users": {
        "get": {
            "summary": "All accounts (admin, auditor)",
            "responses": {
                "200": json_response(
                    "Accounts",
                    {"type": "object", "properties": {"users": {"type": "array", "items": _USER}}},
                ),
                **error_responses(401, 403),
            },
        }
    },
}
