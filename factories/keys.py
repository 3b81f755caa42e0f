"""Vending keys and SM authorisations in a KMC app (supply group `SGC`), and API tokens.

Keys are proposed by `operator1` (the tests' and benchmarks' operator account).
"""

from __future__ import annotations

import datetime as dt

from flask import Flask

from factories.callers import caller
from kmc.accounts.service import create_token
from kmc.database import db
from vending_keys import service as keys
from vending_keys.domain import AuthorisationSpec, KeySpec, key_identity

SGC = "600727"


def add_key(
    app: Flask,
    krn: int,
    kt: int = 1,
    *,
    dkga: str = "04",
    act: dt.datetime | None = None,
    exp: dt.datetime | None = None,
    sgc: str = SGC,
) -> None:
    """Propose a vending key of `sgc` (the supply group is created on first use)."""
    now = dt.datetime.now(dt.UTC)
    with app.app_context():
        if db.session.get(keys.SupplyGroup, sgc) is None:
            keys.add_supply_group(caller("test"), sgc, "Test supply group", "Test Utility")
        spec = KeySpec(
            key_identity(sgc, krn, kt),
            dkga,
            frozenset({"07", "11"} if dkga == "04" else {"07"}),
            2014,
            255,
            act or now - dt.timedelta(days=1),
            exp or now + dt.timedelta(days=365),
            90,
        )
        keys.propose_key(caller("operator1"), spec)


def authorise(app: Flask, smid: str, krn: int, kt: int = 1, **limits: object) -> None:
    """Propose the authorisation of SM `smid` for key (SGC, krn, kt)."""
    with app.app_context():
        keys.propose_authorisation(
            caller("operator1"),
            AuthorisationSpec(key_identity(SGC, krn, kt), smid, **limits),
        )


def api_headers(app: Flask, username: str = "operator1") -> dict[str, str]:
    """Headers for `POST /api/v1/keyload` with a fresh API token of `username`."""
    with app.app_context():
        issued = create_token(caller("test"), username, "keyload tests")
    return {"Authorization": f"Bearer {issued.secret}", "Content-Type": "application/cms"}
