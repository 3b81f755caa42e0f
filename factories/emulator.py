"""A miniature KMC for the SM emulator's tests and benchmark: certifies an SM, answers its VKLOADREQs.

Built only from `key_load_protocol` and the shared test PKI (`factories.pki`), so SM tests run
without Flask or a database; the real KMC is driven in tests/test_round_trip.py.
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from factories.pki import Party, ProtocolPki, make_pki, make_sm
from key_load_protocol import KeyIdentity, KeyLoadFile, LoadedKey, build_eklf, parse_request
from sm_emulator.module import SecurityModule

NOW = dt.datetime(2030, 3, 1, 12, 0, tzinfo=dt.UTC)
PAN = "600727000000000009"
SMID = "1001"
ID_MAN = "1A2B"


def loaded_key(
    sgc: str = "123457",
    krn: int = 1,
    kt: int = 2,
    *,
    dkga: str = "04",
    eas: frozenset[str] = frozenset({"11"}),
    key_value: bytes | None = None,
    act: dt.datetime = NOW - dt.timedelta(days=30),
    iut: dt.datetime = NOW + dt.timedelta(days=365),
    clm: Decimal | None = None,
    resource_limit: int | None = None,
    ken: int = 255,
    base_date: int = 2014,
) -> LoadedKey:
    """A vending key as a KMC would deliver it (fresh random key value unless given)."""
    length = 8 if dkga == "02" else 20
    return LoadedKey(
        identity=KeyIdentity(sgc, krn, kt),
        ken=ken,
        base_date=base_date,
        dkga=dkga,
        eas=eas,
        key_value=key_value or os.urandom(length),
        act=act,
        exp=iut + dt.timedelta(days=1),
        iut=iut,
        clm=clm,
        resource_limit=resource_limit,
    )


class MiniKmc:
    """Root, key-load signer (EKU keyLoadSigning) and SM certificates from `make_pki`; per-SM
    sequence numbers."""

    def __init__(self, pki: ProtocolPki | None = None) -> None:
        self.pki = pki or make_pki()
        self.sequence: dict[str, int] = {}
        self.sm_certificates: dict[str, Party] = {}

    def root_pem(self) -> bytes:
        return self.pki.root.certificate.public_bytes(serialization.Encoding.PEM)

    def certify(self, sm: SecurityModule, *, smid: str | None = None) -> bytes:
        """The SM certificate (PEM) for `sm`'s key, issued by the root."""
        party = make_sm(self.pki.root, smid=smid or sm.smid, key=sm.private_key)
        self.sm_certificates[sm.smid] = party
        return party.certificate.public_bytes(serialization.Encoding.PEM)

    def answer(
        self,
        request: bytes,
        keys: tuple[LoadedKey, ...],
        *,
        sequence: int | None = None,
        signer: Party | None = None,
        recipient: Party | None = None,
        issue_time: dt.datetime = NOW,
    ) -> bytes:
        """The EKLF answering `request` with `keys` (next sequence number unless given)."""
        smid = parse_request(request).request.smid
        nonce = parse_request(request).request.nonce
        if sequence is None:
            sequence = self.sequence.get(smid, 0) + 1
        self.sequence[smid] = sequence
        klf = KeyLoadFile(
            smid=smid,
            nonce=nonce,
            issue_time=issue_time,
            sequence=sequence,
            kmc_id="Mini KMC",
            keys=keys,
        )
        signer = signer or self.pki.signer
        return build_eklf(
            klf,
            sm_certificate=(recipient or self.sm_certificates[smid]).certificate,
            signer_key=signer.key,
            signer_certificate=signer.certificate,
        )


def ready_sm(
    folder: Path, kmc: MiniKmc, *, smid: str = SMID, now: dt.datetime = NOW
) -> SecurityModule:
    """An SM initialised, trusting `kmc` and holding its certificate (the clock fixed at `now`)."""
    sm, _ = SecurityModule.initialise(folder, smid=smid, id_man=ID_MAN, clock=lambda: now)
    sm.trust(kmc.root_pem())
    sm.install_certificate(kmc.certify(sm))
    return sm
