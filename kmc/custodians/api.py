"""`/api/v1/custodians`: a running KMC's seal, for `kmc unseal` / `kmc seal` and scripts."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint

from kmc.access import allow, current_caller
from kmc.api.schema import operation
from kmc.custodians import service
from kmc.custodians.schemas import Custody, ShareInput
from kmc.errors import Conflict
from kmc.permissions import Permission


@allow(Permission.MASTER_KEY_CUSTODY)
@operation("Whether the KMC is sealed", responses={200: Custody}, errors=(409,))
def custody() -> dict[str, Any]:
    progress = service.status()
    if progress is None:
        raise Conflict("not_split", "this KMC's master key is not split among custodians")
    return asdict(progress)


@allow(Permission.MASTER_KEY_CUSTODY)
@operation(
    "Enter one custodian's share",
    body=ShareInput,
    responses={200: Custody},
    errors=(409,),
    description="Refusals say what was wrong with the share (`invalid_share`, `foreign_share`, "
    "`duplicate_share`, `wrong_shares`), never whose it was.",
)
def enter_share(body: dict[str, Any]) -> dict[str, Any]:
    return asdict(service.enter_share(current_caller(), body["share"]))


@allow(Permission.MASTER_KEY_CUSTODY)
@operation("Seal the KMC again", responses={200: Custody}, errors=(409,))
def seal() -> dict[str, Any]:
    return asdict(service.seal(current_caller()))


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/custodians", "custody", custody)
    bp.add_url_rule("/custodians/shares", "enter_share", enter_share, methods=["POST"])
    bp.add_url_rule("/custodians/seal", "seal", seal, methods=["POST"])
