"""Concurrent vends through one `GroupCommit`, as the service's threads make them: one meter's
vends are serialised (distinct TIDs, each counted once), a limit is never overrun, a work that
fails in a shared commit rolls back alone, and different meters' vends are prepared while
another writer holds the state and then share commits; a key reloaded between a vend's read
and its write is vended as reloaded."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from factories.emulator import NOW, PAN, MiniKmc, loaded_key, ready_sm
from factories.vending_service import SGC, loaded_state
from key_load_protocol import KeyIdentity
from sm_emulator.errors import InvalidRequest, StateUnavailable, VendRefused
from sm_emulator.module import SecurityModule
from sm_emulator.store import DATABASE_FILE, GroupCommit, Work
from sm_emulator.vending import MeterKey, Vending
from sts_token import CreditSubclass, EncryptionAlgorithm, Pan, TariffIndex, TransferAmount
from sts_token.identifiers import luhn_check_digit

KEY = KeyIdentity(SGC, 1, 2)


def _pan(n: int) -> str:
    body = f"6007270{n:010d}"
    return body + luhn_check_digit(body)


def _meter(pan: str) -> MeterKey:
    return MeterKey(KEY, Pan(pan), TariffIndex(1), EncryptionAlgorithm.EA11)


def _in_threads(count: int, vend: Callable[[int, Vending], object], state: Path) -> list[object]:
    """`vend(i, vending)` in `count` threads, each with its own SM (as the service's threads),
    all writing through one group commit; each thread's result or refusal, in thread order."""
    writer = GroupCommit(state / DATABASE_FILE)
    outcomes: list[object] = [None] * count

    def run(i: int) -> None:
        sm = SecurityModule(state, clock=lambda: NOW)
        try:
            outcomes[i] = vend(i, Vending(sm, writer=writer))
        except VendRefused as refusal:
            outcomes[i] = refusal
        finally:
            sm.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    return outcomes


def _store(state: Path) -> tuple[list[tuple[str, int]], Decimal, int, int]:
    db = sqlite3.connect(state / DATABASE_FILE)
    try:
        tids = db.execute("SELECT pan, tid FROM issued_tid").fetchall()
        currency, units, tokens = db.execute(
            "SELECT currency_used, units_used, tokens_issued FROM key_register"
        ).fetchone()
    finally:
        db.close()
    return tids, Decimal(currency), units, tokens


def test_concurrent_vends_for_one_meter_get_distinct_tids_each_counted_once(
    tmp_path: Path,
) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, clm=Decimal(10**6)))

    def five(i: int, vending: Vending) -> list[int | None]:
        amount = TransferAmount.from_decimal("2.5")
        return [
            vending.credit(_meter(PAN), CreditSubclass.ELECTRICITY, amount, Decimal(1)).tid
            for _ in range(5)
        ]

    outcomes = _in_threads(24, five, state)
    returned = [tid for tids in outcomes for tid in tids]  # type: ignore[attr-defined]
    assert len(returned) == len(set(returned)) == 120
    tids, currency, units_tenths, tokens = _store(state)
    assert sorted(tids) == sorted((PAN, tid) for tid in returned)
    assert (currency, units_tenths, tokens) == (Decimal(120), 120 * 25, 120)


def test_concurrent_vends_never_take_a_key_past_its_credit_limit(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC, clm=Decimal(10)))

    def one(i: int, vending: Vending) -> int | None:
        amount = TransferAmount.from_decimal("1")
        return vending.credit(_meter(_pan(i)), CreditSubclass.ELECTRICITY, amount, Decimal(1)).tid

    outcomes = _in_threads(20, one, state)
    refused = [o for o in outcomes if isinstance(o, VendRefused)]
    assert len(refused) == 10 and {r.reason for r in refused} == {"credit_limit"}
    tids, currency, _, tokens = _store(state)
    issued = {_pan(i) for i, o in enumerate(outcomes) if isinstance(o, int)}
    assert {pan for pan, _ in tids} == issued and len(tids) == 10
    assert (currency, tokens) == (Decimal(10), 10)


class _Arrivals:
    """A writer that counts the vends reaching it before passing them to the group commit."""

    def __init__(self, writer: GroupCommit) -> None:
        self.writer = writer
        self.arrived = threading.Semaphore(0)

    def write(self, work: Work[object]) -> object:
        self.arrived.release()
        return self.writer.write(work)


def test_different_meters_are_prepared_in_parallel_and_share_commits(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC))
    writer = GroupCommit(state / DATABASE_FILE)
    arrivals = _Arrivals(writer)
    vends = 16
    tids: dict[str, int | None] = {}

    def vend(i: int) -> None:
        sm = SecurityModule(state, clock=lambda: NOW)
        vending = Vending(sm, writer=arrivals)
        amount = TransferAmount.from_decimal("1")
        tids[_pan(i)] = vending.credit(
            _meter(_pan(i)), CreditSubclass.ELECTRICITY, amount, Decimal(0)
        ).tid
        sm.close()

    other = SecurityModule(state, clock=lambda: NOW)
    threads = [threading.Thread(target=vend, args=(i,)) for i in range(vends)]
    with other.store.transaction():  # another writer holds the state's writer lock
        for thread in threads:
            thread.start()
        for _ in range(vends):  # every meter's key derived while that writer holds it
            assert arrivals.arrived.acquire(timeout=60)
    for thread in threads:
        thread.join()
    other.close()
    writer.close()
    assert len(tids) == vends and None not in tids.values()
    assert writer.commits < vends


def test_a_work_that_fails_in_a_shared_commit_is_rolled_back_alone(tmp_path: Path) -> None:
    state = loaded_state(tmp_path / "sm", loaded_key(SGC))
    arrivals = _Arrivals(GroupCommit(state / DATABASE_FILE))
    works = 8
    failed: list[int] = []

    def write(i: int) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO issued_tid (pan, tid, slot, kind, issued_at) VALUES (?, ?, 1, 'x', '')",
                (_pan(i), i),
            )
            if i % 2:
                raise ValueError(i)

        try:
            arrivals.write(work)
        except ValueError:
            failed.append(i)

    other = SecurityModule(state, clock=lambda: NOW)
    threads = [threading.Thread(target=write, args=(i,)) for i in range(works)]
    with other.store.transaction():
        for thread in threads:
            thread.start()
        for _ in range(works):
            assert arrivals.arrived.acquire(timeout=60)
    for thread in threads:
        thread.join()
    other.close()
    arrivals.writer.close()
    tids, _, _, _ = _store(state)
    assert sorted(failed) == [1, 3, 5, 7]
    assert sorted(tids) == [(_pan(i), i) for i in (0, 2, 4, 6)]
    assert arrivals.writer.commits < works


def test_a_transaction_sqlite_cannot_begin_fails_every_waiting_vend_and_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real fault at BEGIN: another connection holds SQLite's write lock (without the
    writer lock a well-behaved process takes) past the busy timeout. Every vend waiting in the
    group gets `state_unavailable`, none hangs or gets nothing, and the next write works."""
    state = loaded_state(tmp_path / "sm", loaded_key(SGC))
    monkeypatch.setattr("sm_emulator.store.BUSY_TIMEOUT_SECONDS", 0.2)
    writer = GroupCommit(state / DATABASE_FILE)
    outcomes: list[object] = [None] * 4
    intruder = sqlite3.connect(state / DATABASE_FILE, isolation_level=None)
    intruder.execute("BEGIN IMMEDIATE")

    def write(i: int) -> None:
        try:
            outcomes[i] = writer.write(lambda db: db.execute("SELECT 1").fetchone()[0])
        except StateUnavailable as error:
            outcomes[i] = error.reason
            assert "database is locked" in error.message

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    intruder.execute("ROLLBACK")
    intruder.close()
    assert outcomes == ["state_unavailable"] * 4
    assert writer.write(lambda db: db.execute("SELECT 2").fetchone()[0]) == 2
    # A defect in our SQL is not a storage fault: it stays itself (a 500, traceback logged).
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        writer.write(lambda db: db.execute("SELECT 1 FROM no_such_table"))
    writer.close()


def test_a_key_reloaded_between_snapshot_and_write_is_vended_as_reloaded(tmp_path: Path) -> None:
    kmc = MiniKmc()
    sm = ready_sm(tmp_path / "sm", kmc)
    key = loaded_key(SGC)
    sm.load(kmc.answer(sm.request(None), (key,)))

    class ReloadFirst:
        """The store's writer, after the KMC's new file for the key (now EA07 and EA11)."""

        def write(self, work: Work[object]) -> object:
            both = dataclasses.replace(key, eas=frozenset({"07", "11"}))
            sm.load(kmc.answer(sm.request(None), (both,)))
            return sm.store.write(work)

    vending = Vending(sm, writer=ReloadFirst())
    meter = MeterKey(KEY, Pan(PAN), TariffIndex(1))  # no EA: the key allowed one when prepared
    amount = TransferAmount.from_decimal("1")
    with pytest.raises(InvalidRequest) as refused:
        vending.credit(meter, CreditSubclass.ELECTRICITY, amount, Decimal(1))
    assert refused.value.reason == "ea_ambiguous"
    sm.close()
    tids, currency, _, tokens = _store(tmp_path / "sm")
    assert (tids, currency, tokens) == ([], Decimal(0), 0)
