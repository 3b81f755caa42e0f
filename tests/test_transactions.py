"""One transaction model (`kmc.database.use_case`): only use cases commit, nested ones join the
outermost, audited refusals keep their entry, bulk items refuse alone, lost races run again."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import event, func, select
from sqlalchemy.exc import IntegrityError

from factories.callers import caller
from key_load import service as key_load
from key_load.models import KeyLoadIssue
from kmc import clock
from kmc.audit import service as audit
from kmc.audit.models import AuditEntry
from kmc.audit.service import verify
from kmc.database import CommitOutsideUseCase, RunAgain, audited_refusal, db, use_case
from kmc.errors import Conflict, InvalidInput
from sm_registry import service as registry
from sm_registry.models import Manufacturer, SecurityModule
from tests.test_registry_csr import make_csr

MAKER1 = registry.Caller("maker1", "manufacturer", "1A2B")


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def _manufacturer(id_man: str) -> Manufacturer:
    return Manufacturer(id_man=id_man, name="Test", contact="", created_at=clock.now())


def _committed(app, query):
    """What another session sees: only what was committed."""
    with app.app_context():
        return db.session.scalar(query)


def _entries(app, action):
    return _committed(
        app, select(func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
    )


def _smids(app):
    with app.app_context():
        return sorted(db.session.scalars(select(SecurityModule.smid)))


def test_a_commit_outside_a_use_case_raises_and_writes_nothing(ctx):
    db.session.add(_manufacturer("9A9A"))
    with pytest.raises(CommitOutsideUseCase):
        db.session.commit()
    db.session.rollback()
    assert _committed(ctx, select(Manufacturer).where(Manufacturer.id_man == "9A9A")) is None


def _commit_half_way() -> None:
    db.session.commit()


def _refuse_late() -> None:
    raise Conflict("late", "refused after the inner use case")


@pytest.mark.parametrize(
    ("then", "error"), [(_commit_half_way, CommitOutsideUseCase), (_refuse_late, Conflict)]
)
def test_an_outer_use_case_failing_after_an_inner_one_rolls_it_all_back(ctx, then, error):
    """A commit half-way through raises too: it would have made the inner change durable."""

    @use_case
    def change_then() -> None:
        registry.create_manufacturer(caller("admin1"), "9A9A", "First")
        then()

    before = _entries(ctx, "manufacturer.create")
    with pytest.raises(error):
        change_then()
    assert _committed(ctx, select(Manufacturer).where(Manufacturer.id_man == "9A9A")) is None
    assert _entries(ctx, "manufacturer.create") == before


def test_a_use_case_inside_a_use_case_commits_once_at_the_outer_end(ctx):
    @use_case
    def two_manufacturers() -> None:
        registry.create_manufacturer(caller("admin1"), "9A9A", "First")
        registry.create_manufacturer(caller("admin1"), "9B9B", "Second")

    before = _committed(ctx, select(func.count()).select_from(Manufacturer))
    commits = []

    def count(_connection):
        commits.append(1)

    event.listen(db.engine, "commit", count)
    try:
        two_manufacturers()
    finally:
        event.remove(db.engine, "commit", count)
    assert len(commits) == 1  # the inner use cases joined the outer one's transaction
    assert _committed(ctx, select(func.count()).select_from(Manufacturer)) == before + 2


def test_a_refused_key_load_leaves_its_audit_entry_and_nothing_else(ctx):
    before = _entries(ctx, "keyload.refuse")
    with pytest.raises(InvalidInput):
        key_load.process_request(caller("operator1"), b"not a VKLOADREQ")
    assert _entries(ctx, "keyload.refuse") == before + 1
    assert _committed(ctx, select(func.count()).select_from(KeyLoadIssue)) == 0
    assert verify().ok


def test_an_audited_refusal_propagating_through_an_outer_use_case_keeps_only_its_entry(ctx):
    @use_case
    def change_then_load() -> None:
        registry.create_manufacturer(caller("admin1"), "9A9A", "First")
        key_load.process_request(caller("operator1"), b"not a VKLOADREQ")

    refusals, creations = _entries(ctx, "keyload.refuse"), _entries(ctx, "manufacturer.create")
    with pytest.raises(InvalidInput):
        change_then_load()
    assert _committed(ctx, select(Manufacturer).where(Manufacturer.id_man == "9A9A")) is None
    assert _entries(ctx, "manufacturer.create") == creations
    assert _entries(ctx, "keyload.refuse") == refusals + 1
    assert verify().ok


def test_a_lost_race_runs_the_use_case_again_then_refuses_audited(ctx):
    runs = []
    id_mans = iter(range(0x9A00, 0x9AFF))

    @use_case(attempts=3)
    def racing(succeed_on: int) -> int:
        runs.append(1)
        registry.create_manufacturer(caller("admin1"), f"{next(id_mans):04X}", "Racer")
        if len(runs) < succeed_on:

            def record() -> None:
                audit.record("admin1", "test.busy", "thing", "racing")

            raise RunAgain(audited_refusal(Conflict("busy", "lost every race"), record))
        return len(runs)

    assert racing(2) == 2
    assert _committed(ctx, select(func.count()).where(Manufacturer.name == "Racer")) == 1
    runs.clear()
    with pytest.raises(Conflict, match="lost every race"):
        racing(99)
    assert len(runs) == 3
    assert _committed(ctx, select(func.count()).where(Manufacturer.name == "Racer")) == 1
    assert _entries(ctx, "test.busy") == 1


def test_bulk_items_refused_by_the_constraints_refuse_alone_in_their_savepoints(ctx, monkeypatch):
    """The group's fast path hits a constraint: each item is redone in its own savepoint, the
    good ones are kept, the key re-use attempt keeps its audit entry."""
    reused = ec.generate_private_key(ec.SECP384R1())
    registry.register(MAKER1, make_csr("1000", key=reused), "virtual")
    fast_path = registry._add_group

    def add_group_then_collide(upload, read):
        verdicts = fast_path(upload, read)
        db.session.add(_manufacturer("1A2B"))  # exists: the group's INSERTs fail
        return verdicts

    monkeypatch.setattr(registry, "_add_group", add_group_then_collide)
    items = [
        ("good", make_csr("1001")),
        ("reuse", make_csr("1002", key=reused)),
        ("again", make_csr("1000")),
        ("also good", make_csr("1003")),
    ]
    before = _entries(ctx, "sm.register.refused")
    verdicts = [
        (r.name, r.accepted, r.reason) for r in registry.register_many(MAKER1, items, "virtual")
    ]
    assert verdicts == [
        ("good", True, None),
        ("reuse", False, "duplicate_public_key"),
        ("again", False, "duplicate_smid"),
        ("also good", True, None),
    ]
    assert _smids(ctx) == ["1000", "1001", "1003"]
    assert _entries(ctx, "sm.register.refused") == before + 1
    assert verify().ok


def test_a_flush_refused_by_a_constraint_is_a_conflict_inside_the_use_case(ctx, monkeypatch):
    monkeypatch.setattr(db.session, "get", lambda *_args, **_kwargs: None)  # miss the check
    with pytest.raises(Conflict) as refused:
        registry.create_manufacturer(caller("admin1"), "1A2B", "Again")
    assert refused.value.reason == "duplicate_id_man"
    assert not isinstance(refused.value.__cause__, IntegrityError)
