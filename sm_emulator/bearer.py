"""Bearer tokens for the vending service, stored hashed in a tokens file.

    NAME SHA256-HEX        one client per line; `#` starts a comment

A token is 32 random bytes (URL-safe base64) shown once by `sm-emulator api-token`; the file
holds only its SHA-256, so reading the file does not let anyone call the service. A presented
token is hashed and compared with every stored hash in constant time (`hmac.compare_digest`).
A high-entropy random token needs no slow password hash: there is nothing to guess.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from sm_emulator.errors import InvalidRequest


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class BearerTokens:
    """The hashes of the tokens a service admits."""

    def __init__(self, hashes: dict[str, str]) -> None:
        self.hashes = hashes

    @classmethod
    def read(cls, path: Path) -> BearerTokens:
        hashes: dict[str, str] = {}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            if len(parts) != 2 or len(parts[1]) != 64:
                raise InvalidRequest(
                    "invalid_tokens_file", f"{path}:{number}: expected NAME SHA256-HEX"
                )
            hashes[parts[0]] = parts[1].lower()
        return cls(hashes)

    def admits(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header carries one of the tokens."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        presented = _digest(token.strip())
        found = False
        for stored in self.hashes.values():
            found |= hmac.compare_digest(presented, stored)
        return found


def add_token(path: Path, name: str) -> str:
    """A fresh token for client `name`, its hash appended to the file (created 0600)."""
    if not name or any(c.isspace() or c == "#" for c in name):
        raise InvalidRequest("invalid_name", "a client name has no spaces or '#'")
    if path.exists() and name in BearerTokens.read(path).hashes:
        raise InvalidRequest("name_taken", f"{path} already has a token for {name}")
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "a") as file:
        file.write(f"{name} {_digest(token)}\n")
    return token
