"""SM emulator: sustained `vend credit` rate with durable counters, and EKLF load time for 25 keys.

Run: ``python -m bench emulator``. Beside each figure, its floor measured in the same run: the raw
token engine rate (decoder key derivation + credit token, no state) and the rate of empty durable
commits (`BEGIN IMMEDIATE` + `COMMIT`, WAL, synchronous=FULL) on the same file system; a vend
cannot beat either. STS 600-10-1 asks 1 transaction/s of an SM; the project target is 1 000/s.
The SM is certified by the mini KMC of `factories.emulator`.
"""

from __future__ import annotations

import tempfile
import time
from decimal import Decimal
from pathlib import Path

from factories.emulator import NOW, MiniKmc, loaded_key, ready_sm
from sm_emulator.store import Store
from sm_emulator.vending import MeterKey, Vending
from sts_token import (
    CreditSubclass,
    KeyParameters,
    Pan,
    TariffIndex,
    TokenKey,
    TransferAmount,
    VendingKey,
    credit_token,
    derive_decoder_key,
)
from sts_token.identifiers import luhn_check_digit

_SECONDS = 2.0
_METERS = 1000


def _pans(count: int) -> list[Pan]:
    bodies = [f"6007270{n:010d}" for n in range(count)]
    return [Pan(body + luhn_check_digit(body)) for body in bodies]


def _rate(action: object, seconds: float = _SECONDS) -> float:
    assert callable(action)
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        action()
        done += 1
    return done / elapsed


def vend_rate(folder: Path) -> float:
    kmc = MiniKmc()
    sm = ready_sm(folder / "sm", kmc)
    key = loaded_key()
    sm.load(kmc.answer(sm.request(None), (key,)))
    vending = Vending(sm)
    meters = [MeterKey(key.identity, pan, TariffIndex(1)) for pan in _pans(_METERS)]
    amount, paid = TransferAmount(100), Decimal("1.00")
    turn = iter(range(10**9))

    def vend() -> None:
        vending.credit(meters[next(turn) % _METERS], CreditSubclass.ELECTRICITY, amount, paid)

    rate = _rate(vend)
    sm.close()
    return rate


def token_floor() -> float:
    vk = VendingKey(bytes(20))
    params = KeyParameters.from_values(
        dkga="04", ea="11", sgc="123457", ti=1, krn=1, kt=2, base_date=2014, ken=255
    )
    pans = _pans(_METERS)
    turn = iter(range(10**9))
    issued = NOW.replace(tzinfo=None)

    def token() -> None:
        key = TokenKey(derive_decoder_key(vk, pans[next(turn) % _METERS], params), params.base_date)
        credit_token(key, CreditSubclass.ELECTRICITY, TransferAmount(100), issued)

    return _rate(token)


def commit_floor(folder: Path) -> float:
    store = Store(folder / "floor.db")
    store.create_schema()

    def commit() -> None:
        with store.transaction() as db:
            db.execute("UPDATE key_register SET tokens_issued = tokens_issued + 1")

    rate = _rate(commit)
    store.close()
    return rate


def load_seconds(folder: Path, count: int = 25, runs: int = 5) -> float:
    kmc = MiniKmc()
    best = float("inf")
    for run in range(runs):
        sm = ready_sm(folder / f"load{run}", kmc)
        eklf = kmc.answer(
            sm.request(None), tuple(loaded_key(f"{100000 + n}") for n in range(count))
        )
        start = time.perf_counter()
        sm.load(eklf)
        best = min(best, time.perf_counter() - start)
        sm.close()
    return best


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-emulator-", dir=".") as folder:
        path = Path(folder)
        print(
            f"vend credit (durable counters + TID store, {_METERS} meters): {vend_rate(path):8.0f} tokens/s"
        )
        print(
            f"  floor: token engine alone (derive + credit token):  {token_floor():8.0f} tokens/s"
        )
        print(
            f"  floor: empty durable commits (WAL, synchronous=FULL): {commit_floor(path):8.0f} /s"
        )
        print(
            f"load EKLF with 25 keys (best of 5):                  {load_seconds(path) * 1000:8.1f} ms"
        )
