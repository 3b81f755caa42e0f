"""Registry rules through the service API: §4.5 policy, refusals that write nothing, lifecycle, scoping."""

from __future__ import annotations

import threading
from itertools import islice

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import event, func, select

from factories.csr import make_csr
from kmc.audit.models import AuditEntry
from kmc.audit.service import verify
from kmc.database import db
from kmc.errors import Conflict, Forbidden, InvalidInput, NotFound, PolicyRefusal
from sm_registry import service
from sm_registry.certificates import SmProfile
from sm_registry.identifiers import CertificationReference
from sm_registry.models import SecurityModule, SmStateEvent
from tests.conftest import split_and_unseal
from tests.test_registry_csr import DATA, REF

ADMIN = service.Caller("admin1", "admin")
OPERATOR = service.Caller("operator1", "operator")
AUDITOR = service.Caller("auditor1", "auditor")
MAKER1 = service.Caller("maker1", "manufacturer", "1A2B")
MAKER2 = service.Caller("maker2", "manufacturer", "3C4D")
CERT = CertificationReference.parse(REF)


def counts():
    return tuple(
        db.session.scalar(select(func.count()).select_from(t))
        for t in (SecurityModule, SmStateEvent, AuditEntry)
    )


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def register(caller=MAKER1, smid="1001", kind="certified", cert=CERT, **kw):
    return service.register(caller, make_csr(smid, ou=kw.pop("ou", "1A2B"), **kw), kind, cert)


def test_manufacturer_registers_a_pending_sm_with_history_and_audit(ctx):
    before = counts()
    sm = register()
    assert (sm.smid, sm.id_man, sm.kind, sm.state, sm.registered_by) == (
        "1001",
        "1A2B",
        "certified",
        "pending",
        "maker1",
    )
    assert sm.certificate_der is None
    assert counts() == (before[0] + 1, before[1] + 1, before[2] + 1)
    entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert (entry.actor, entry.action, entry.object_id) == ("maker1", "sm.register", "1001")
    assert sm.public_key_sha256 in entry.details


def test_openssl_made_csr_registers(ctx):
    sm = service.register(MAKER1, (DATA / "sm-p384.csr.pem").read_bytes(), "certified", CERT)
    assert sm.smid == "600727000001"


def test_admin_registers_for_a_named_manufacturer(ctx):
    sm = service.register(ADMIN, make_csr("77", ou=None), "virtual", None, "3c4d")
    assert sm.id_man == "3C4D"


def _refused(error, reason, match, call):
    before = counts()
    with pytest.raises(error, match=match) as refused:
        call()
    assert refused.value.reason == reason
    assert counts() == before


def test_admin_must_name_the_manufacturer(ctx):
    _refused(
        InvalidInput,
        "manufacturer_required",
        "must name the manufacturer",
        lambda: service.register(ADMIN, make_csr("77"), "virtual"),
    )


def test_admin_naming_an_unknown_manufacturer_is_refused(ctx):
    _refused(
        NotFound,
        "unknown_manufacturer",
        "no manufacturer with ID_man FFFF",
        lambda: service.register(ADMIN, make_csr("77"), "virtual", None, "FFFF"),
    )


def test_operator_and_auditor_cannot_register(ctx):
    for caller in (OPERATOR, AUDITOR):
        _refused(
            Forbidden, "forbidden", "only manufacturers and admins", lambda c=caller: register(c)
        )


def test_ou_naming_another_manufacturer_is_refused(ctx):
    _refused(
        Forbidden,
        "id_man_mismatch",
        "OU names ID_man 3C4D, but the upload is for 1A2B",
        lambda: register(ou="3C4D"),
    )


def test_manufacturer_cannot_register_for_another_id_man(ctx):
    _refused(
        Forbidden,
        "id_man_mismatch",
        "only for 1A2B",
        lambda: service.register(MAKER1, make_csr("5"), "virtual", None, "3C4D"),
    )


def test_duplicate_smid_is_refused(ctx):
    register(smid="1001")
    _refused(Conflict, "duplicate_smid", "SMID 1001 is already registered", lambda: register())


def test_duplicate_smid_from_another_manufacturer_is_refused(ctx):
    register(smid="1001")
    _refused(
        Conflict,
        "duplicate_smid",
        "already registered",
        lambda: register(MAKER2, smid="1001", ou="3C4D"),
    )


def test_same_public_key_under_another_smid_is_refused_and_audited(ctx):
    key = ec.generate_private_key(ec.SECP384R1())
    register(smid="1001", key=key)
    sms, events, entries = counts()
    with pytest.raises(Conflict, match="one key, one SM") as refused:
        register(MAKER2, smid="2002", ou="3C4D", key=key)
    assert refused.value.reason == "duplicate_public_key"
    assert counts() == (sms, events, entries + 1)
    entry = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert (entry.actor, entry.action, entry.object_id) == ("maker2", "sm.register.refused", "2002")
    assert '"bound_to":"1001"' in entry.details


def test_revoked_sms_key_can_never_be_registered_again(ctx):
    key = ec.generate_private_key(ec.SECP384R1())
    register(smid="1001", key=key)
    service.change_state(OPERATOR, "1001", "revoke", "compromised")
    with pytest.raises(Conflict, match="one key, one SM"):
        register(smid="1002", key=key)
    assert db.session.get(SecurityModule, "1002") is None


def test_virtual_sm_is_accepted_and_marked_in_test_mode(ctx):
    assert register(kind="virtual", cert=None).kind == "virtual"


def test_certified_sm_needs_its_certification_reference(ctx):
    _refused(
        InvalidInput,
        "certification_required",
        "certification reference",
        lambda: register(cert=None),
    )


def test_virtual_sm_cannot_carry_a_certification_reference(ctx):
    _refused(
        InvalidInput, "certification_not_allowed", "virtual SM", lambda: register(kind="virtual")
    )


def test_unknown_kind_is_refused(ctx):
    _refused(InvalidInput, "bad_kind", "certified, virtual", lambda: register(kind="hardware"))


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_live_kmc_refuses_virtual_sms_naming_the_rule(ctx):
    _refused(
        PolicyRefusal,
        "virtual_sm_refused",
        "STS 600-10-1 §4.5: a live KMC never associates a public key with a virtual",
        lambda: register(kind="virtual", cert=None),
    )


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_live_kmc_refuses_uncertified_sms_naming_the_rule(ctx):
    _refused(
        PolicyRefusal,
        "uncertified_sm",
        "STS 600-10-1 §4.5: a live KMC registers only certified SMs",
        lambda: register(cert=None),
    )


@pytest.mark.parametrize("kmc_mode", ["live"])
def test_live_kmc_registers_and_certifies_certified_sms(ctx):
    register()
    sm = service.change_state(OPERATOR, "1001", "approve", "checked")
    assert SmProfile.from_certificate(x509.load_der_x509_certificate(sm.certificate_der)).kind == (
        "certified"
    )


def test_live_kmc_does_not_approve_a_virtual_sm_left_from_test_mode(ctx):
    register(kind="virtual", cert=None)
    ctx.config["KMC_MODE"] = "live"
    split_and_unseal(ctx)
    with pytest.raises(PolicyRefusal, match="§4.5"):
        service.change_state(OPERATOR, "1001", "approve", "ok")
    assert db.session.get(SecurityModule, "1001").state == "pending"


def test_lifecycle_runs_pending_active_suspended_active_revoked(ctx):
    register()
    for action, state in [
        ("approve", "active"),
        ("suspend", "suspended"),
        ("resume", "active"),
        ("suspend", "suspended"),
        ("revoke", "revoked"),
    ]:
        assert service.change_state(OPERATOR, "1001", action, f"because {action}").state == state
    sm = db.session.get(SecurityModule, "1001")
    assert [(e.from_state, e.to_state, e.actor, e.reason) for e in sm.events] == [
        (None, "pending", "maker1", ""),
        ("pending", "active", "operator1", "because approve"),
        ("active", "suspended", "operator1", "because suspend"),
        ("suspended", "active", "operator1", "because resume"),
        ("active", "suspended", "operator1", "because suspend"),
        ("suspended", "revoked", "operator1", "because revoke"),
    ]
    actions = db.session.scalars(
        select(AuditEntry.action).where(AuditEntry.object_id == "1001").order_by(AuditEntry.seq)
    ).all()
    assert actions == [
        "sm.register",
        "sm.approve",
        "sm.suspend",
        "sm.resume",
        "sm.suspend",
        "sm.revoke",
    ]


@pytest.mark.parametrize(
    ("setup", "action"),
    [
        ((), "suspend"),
        ((), "resume"),
        (("approve",), "approve"),
        (("approve",), "resume"),
        (("revoke",), "approve"),
        (("revoke",), "resume"),
        (("revoke",), "revoke"),
    ],
)
def test_transitions_outside_the_lifecycle_are_refused(ctx, setup, action):
    register()
    for step in setup:
        service.change_state(OPERATOR, "1001", step, "setup")
    _refused(
        Conflict,
        "bad_transition",
        f"cannot be {action.removesuffix('e')}ed",
        lambda: service.change_state(OPERATOR, "1001", action, "try"),
    )


def test_state_change_of_unknown_smid_is_refused(ctx):
    _refused(
        NotFound,
        "unknown_sm",
        "no SM with SMID 999",
        lambda: service.change_state(OPERATOR, "999", "approve", "x"),
    )


def test_state_change_needs_a_reason(ctx):
    register()
    _refused(
        InvalidInput,
        "reason_required",
        "give a reason",
        lambda: service.change_state(OPERATOR, "1001", "approve", "  "),
    )


def test_manufacturer_cannot_approve_even_its_own_sm(ctx):
    register()
    _refused(
        Forbidden,
        "forbidden",
        "may not approve",
        lambda: service.change_state(MAKER1, "1001", "approve", "x"),
    )


def test_manufacturer_may_revoke_its_own_sm(ctx):
    register()
    assert service.change_state(MAKER1, "1001", "revoke", "destroyed").state == "revoked"


def test_manufacturer_acting_on_anothers_sm_finds_nothing(ctx):
    register()
    _refused(
        NotFound,
        "unknown_sm",
        "no SM with SMID 1001",
        lambda: service.change_state(MAKER2, "1001", "revoke", "x"),
    )


def test_manufacturer_lists_and_reads_only_its_own_sms(ctx):
    register(smid="1001")
    register(MAKER2, smid="2002", ou="3C4D")
    assert [s.smid for s in service.list_sms(MAKER1)] == ["1001"]
    assert [s.smid for s in service.list_sms(MAKER1, service.SmFilter(id_man="3C4D"))] == []
    assert [s.smid for s in service.list_sms(AUDITOR)] == ["1001", "2002"]
    with pytest.raises(NotFound):
        service.get_sm(MAKER1, "2002")
    with pytest.raises(NotFound):
        service.certificate_chain("2002", MAKER1)


def test_filters_narrow_the_list(ctx):
    register(smid="1001")
    register(MAKER2, smid="2002", ou="3C4D")
    service.change_state(OPERATOR, "2002", "approve", "ok")
    assert [s.smid for s in service.list_sms(AUDITOR, service.SmFilter(state="active"))] == ["2002"]
    assert [s.smid for s in service.list_sms(AUDITOR, service.SmFilter(smid="1001"))] == ["1001"]
    assert [s.smid for s in service.list_sms(AUDITOR, service.SmFilter(id_man="3c4d"))] == ["2002"]
    today = db.session.get(SecurityModule, "1001").registered_at.date()
    window = service.SmFilter(registered_from=today, registered_until=today)
    assert len(service.list_sms(AUDITOR, window)) == 2
    later = service.SmFilter(registered_from=today.replace(year=today.year + 1))
    assert service.list_sms(AUDITOR, later) == []


def test_certificate_chain_exists_only_after_approval(ctx):
    register()
    with pytest.raises(NotFound, match="no certificate yet") as refused:
        service.certificate_chain("1001")
    assert refused.value.reason == "no_certificate"
    service.change_state(OPERATOR, "1001", "approve", "ok")
    chain = service.certificate_chain("1001")
    assert chain.certificate.issuer == chain.intermediates[0].subject
    assert chain.intermediates[0].issuer == chain.root.subject


def test_racing_registrations_of_one_key_bind_it_once(app):
    """Two uploads of the same key at once: the unique constraint lets exactly one through."""
    key = ec.generate_private_key(ec.SECP384R1())
    outcomes: list[str] = []

    def upload(caller, smid, ou):
        with app.app_context():
            try:
                service.register(caller, make_csr(smid, ou=ou, key=key), "virtual")
                outcomes.append("accepted")
            except Conflict as refused:
                outcomes.append(refused.reason)

    threads = [
        threading.Thread(target=upload, args=(MAKER1, "1001", "1A2B")),
        threading.Thread(target=upload, args=(MAKER2, "2002", "3C4D")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["accepted", "duplicate_public_key"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SecurityModule)) == 1


def _audit_tail(count):
    entries = db.session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(count))
    return [(e.action, e.object_id, e.details) for e in reversed(list(entries))]


def test_bulk_decides_repeats_within_a_group_like_one_by_one_registration(ctx):
    older = ec.generate_private_key(ec.SECP384R1())
    register(smid="1000", key=older)
    key = ec.generate_private_key(ec.SECP384R1())
    first = make_csr("1001", key=key)
    items = [
        ("a", first),
        ("b", make_csr("1002", key=key)),  # a's key under another SMID
        ("c", first),  # a again
        ("d", make_csr("1001")),  # a's SMID with a fresh key
        ("e", make_csr("1003", key=older)),  # the key of an SM registered earlier
        ("f", make_csr("1004")),
    ]
    sms, events, entries = counts()
    statements = []

    def seen(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        verdicts = [
            (r.name, r.accepted, r.reason) for r in service.register_many(MAKER1, items, "virtual")
        ]
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    # Decided from the group's look-up (in the group's one savepoint), not by the constraints
    # item by item.
    assert len([s for s in statements if s.startswith("SAVEPOINT")]) == 1
    assert verdicts == [
        ("a", True, None),
        ("b", False, "duplicate_public_key"),
        ("c", False, "duplicate_smid"),
        ("d", False, "duplicate_smid"),
        ("e", False, "duplicate_public_key"),
        ("f", True, None),
    ]
    assert counts() == (sms + 2, events + 2, entries + 4)
    assert [(action, smid) for action, smid, _ in _audit_tail(4)] == [
        ("sm.register", "1001"),
        ("sm.register.refused", "1002"),
        ("sm.register.refused", "1003"),
        ("sm.register", "1004"),
    ]
    assert '"bound_to":"1001"' in _audit_tail(3)[0][2]
    assert '"bound_to":"1000"' in _audit_tail(2)[0][2]
    assert verify().ok


def test_bulk_verdicts_come_only_once_their_group_is_committed(app):
    key = ec.generate_private_key(ec.SECP384R1())
    group = service.COMMIT_EVERY
    items = [("first", make_csr("5000", key=key))]
    items += [(str(n), make_csr(str(5000 + n))) for n in range(1, group)]
    items.append(("reuse", make_csr("6000", key=key)))  # the next group reuses the first key

    def committed():
        with app.app_context():  # another session: sees only what was committed
            return db.session.scalar(select(func.count()).select_from(SecurityModule))

    with app.app_context():
        before = committed()
        verdicts = service.register_many(MAKER1, items, "virtual")
        first_group = list(islice(verdicts, group))
        assert all(r.accepted for r in first_group)
        assert committed() == before + group
        assert [(r.name, r.reason) for r in verdicts] == [("reuse", "duplicate_public_key")]
        assert committed() == before + group


def test_bulk_group_raced_by_another_registration_still_gets_exact_verdicts(app, backend):
    """Another upload commits after the group's uniqueness look-up: the constraints decide."""
    if backend == "sqlite":
        pytest.skip("SQLite writers hold the write lock from BEGIN IMMEDIATE: nobody gets in")
    keys = [ec.generate_private_key(ec.SECP384R1()) for _ in range(3)]
    items = [
        (smid, make_csr(smid, key=k))
        for smid, k in zip(("4001", "4002", "4003"), keys, strict=True)
    ]
    raced = []

    def race(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT security_modules.public_key_sha256") and not raced:
            raced.append(statement)
            with app.app_context():  # a separate session, committing before the group writes
                register(MAKER2, smid="9009", ou="3C4D", key=keys[1], kind="virtual", cert=None)

    with app.app_context():
        event.listen(db.engine, "after_cursor_execute", race)
        try:
            verdicts = list(service.register_many(MAKER1, items, "virtual"))
        finally:
            event.remove(db.engine, "after_cursor_execute", race)
        assert raced
        assert [(r.name, r.accepted, r.reason) for r in verdicts] == [
            ("4001", True, None),
            ("4002", False, "duplicate_public_key"),
            ("4003", True, None),
        ]
        assert sorted(db.session.scalars(select(SecurityModule.smid))) == ["4001", "4003", "9009"]
        refused = _audit_tail(2)[0]
        assert refused[:2] == ("sm.register.refused", "4002")
        assert '"bound_to":"9009"' in refused[2]
        assert verify().ok
