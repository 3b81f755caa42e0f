"""EKLF loading: keys installed all-or-nothing; every refusal leaves the state untouched."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from factories.emulator import NOW, MiniKmc, loaded_key, ready_sm
from factories.forgery import forged_eklf
from factories.pki import make_pki, make_sm
from key_load_protocol import KeyLoadFile, LoadedKey, parse_request
from sm_emulator.cli import main
from sm_emulator.errors import LoadRefused
from sm_emulator.module import SecurityModule


def _state(sm: SecurityModule) -> str:
    """Everything observable about the SM's state (registers, counters, requests, sequence)."""
    with sm.store.snapshot() as db:
        dump = "\n".join(db.iterdump())
    return hashlib.sha256(dump.encode()).hexdigest()


@pytest.fixture
def kmc() -> MiniKmc:
    return MiniKmc()


@pytest.fixture
def sm(tmp_path: Path, kmc: MiniKmc) -> SecurityModule:
    return ready_sm(tmp_path / "sm", kmc)


def _refused(sm: SecurityModule, der: bytes) -> str:
    before = _state(sm)
    with pytest.raises(LoadRefused) as refused:
        sm.load(der)
    assert _state(sm) == before
    return refused.value.reason


def test_load_installs_the_keys_with_check_values(sm: SecurityModule, kmc: MiniKmc) -> None:
    keys = (loaded_key(krn=1), loaded_key(krn=2, dkga="02", eas=frozenset({"07"})))
    loaded = sm.load(kmc.answer(sm.request(None), keys))
    assert loaded.sequence == 1
    registers = sm.registers()
    assert [(r.slot, r.identity) for r in registers] == [
        (1, keys[0].identity),
        (2, keys[1].identity),
    ]
    assert [r.kcv for r in registers] == [k.kcv.hex().upper() for k in keys]
    assert sm.status()["outstanding_requests"] == 0


def test_keys_json_shows_metadata_and_never_the_key(
    tmp_path: Path, sm: SecurityModule, kmc: MiniKmc
) -> None:
    key = loaded_key(clm=None, resource_limit=1000)
    sm.load(kmc.answer(sm.request(None), (key,)))
    result = CliRunner().invoke(main, ["keys", "--state", str(sm.folder), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    [row] = data["keys"]
    assert row["kcv"] == key.kcv.hex().upper() and row["resource_limit"] == 1000
    assert key.key_value.hex() not in result.output.lower()


def test_replay_of_a_loaded_file_is_refused(sm: SecurityModule, kmc: MiniKmc) -> None:
    der = kmc.answer(sm.request(None), (loaded_key(),))
    sm.load(der)
    assert _refused(sm, der) == "already_loaded"


def test_a_file_answering_no_outstanding_request_is_refused(
    sm: SecurityModule, kmc: MiniKmc, tmp_path: Path
) -> None:
    other = ready_sm(tmp_path / "other", kmc, smid="1001")  # same SMID, its own request
    assert other.smid == sm.smid
    der = kmc.answer(
        other.request(None),
        (loaded_key(),),
        recipient=make_sm(kmc.pki.root, smid=sm.smid, key=sm.private_key),
    )
    assert _refused(sm, der) == "unknown_nonce"


def test_a_file_for_another_sm_is_refused(sm: SecurityModule, kmc: MiniKmc, tmp_path: Path) -> None:
    other = ready_sm(tmp_path / "other", kmc, smid="2002")
    sm.request(None)
    der = kmc.answer(other.request(None), (loaded_key(),))
    assert _refused(sm, der) == "not_for_this_key"


def test_a_file_enveloped_to_this_sm_but_naming_another_smid_is_refused(
    sm: SecurityModule, kmc: MiniKmc, tmp_path: Path
) -> None:
    other = ready_sm(tmp_path / "other", kmc, smid="2002")
    kmc.sm_certificates["2002"] = make_sm(kmc.pki.root, smid="2002", key=sm.private_key)
    sm.request(None)
    der = kmc.answer(other.request(None), (loaded_key(),))
    assert _refused(sm, der) == "smid_mismatch"


def test_a_tampered_file_is_refused(sm: SecurityModule, kmc: MiniKmc) -> None:
    der = bytearray(kmc.answer(sm.request(None), (loaded_key(),)))
    der[len(der) // 2] ^= 0x01
    assert _refused(sm, bytes(der)) in {
        "bad_signature",
        "digest_mismatch",
        "not_der",
        "bad_structure",
        "untrusted_chain",  # the middle byte may fall in the carried signer certificate
    }


def test_a_file_signed_under_another_ca_is_refused(sm: SecurityModule, kmc: MiniKmc) -> None:
    stranger = make_pki()
    der = kmc.answer(sm.request(None), (loaded_key(),), signer=stranger.signer)
    assert _refused(sm, der) == "untrusted_chain"


def _forged_by_another_sm(sm: SecurityModule, kmc: MiniKmc, folder: Path, request: bytes) -> bytes:
    """SM B's forgery for `sm`: B holds a certificate from the same KMC and reads `sm`'s nonce
    in its signed but unencrypted VKLOADREQ; it picks its own keys and the highest sequence."""
    ready_sm(folder, kmc, smid="2002")
    klf = KeyLoadFile(
        smid=sm.smid,
        nonce=parse_request(request).request.nonce,
        issue_time=NOW,
        sequence=2**63 - 1,
        kmc_id="Mini KMC",
        keys=(loaded_key(clm=None, resource_limit=None),),
    )
    return forged_eklf(
        klf,
        sm_certificate=kmc.sm_certificates[sm.smid].certificate,
        signer=kmc.sm_certificates["2002"],
    )


def test_a_file_signed_by_another_sms_key_is_refused(
    sm: SecurityModule, kmc: MiniKmc, tmp_path: Path
) -> None:
    request = sm.request(None)
    forged = _forged_by_another_sm(sm, kmc, tmp_path / "other", request)
    assert _refused(sm, forged) == "signer_purpose"
    assert sm.load(kmc.answer(request, (loaded_key(),))).sequence == 1


def test_load_cli_refuses_a_file_signed_by_another_sms_key(
    sm: SecurityModule, kmc: MiniKmc, tmp_path: Path
) -> None:
    request = sm.request(None)
    forged, genuine = tmp_path / "forged.eklf", tmp_path / "genuine.eklf"
    forged.write_bytes(_forged_by_another_sm(sm, kmc, tmp_path / "other", request))
    genuine.write_bytes(kmc.answer(request, (loaded_key(),)))
    sm.close()
    runner, env = CliRunner(), {"SM_EMULATOR_FAKE_NOW": "2030-03-01T12:00:00Z"}
    refused = runner.invoke(main, ["load", "--state", str(sm.folder), str(forged)], env=env)
    assert refused.exit_code == 1
    assert refused.output == (
        "sm-emulator: signer_purpose: the key-load file is refused: "
        "the signer certificate is not a KMC key-load signer\n"
    )
    loaded = runner.invoke(main, ["load", "--state", str(sm.folder), str(genuine)], env=env)
    assert loaded.exit_code == 0, loaded.output


def test_a_sequence_number_that_does_not_increase_is_refused(
    sm: SecurityModule, kmc: MiniKmc
) -> None:
    sm.load(kmc.answer(sm.request(None), (loaded_key(krn=1),), sequence=5))
    der = kmc.answer(sm.request(None), (loaded_key(krn=2),), sequence=5)
    assert _refused(sm, der) == "sequence_not_increasing"
    sm.load(kmc.answer(sm.request(None), (loaded_key(krn=3),), sequence=6))


def test_twenty_five_registers_fill_and_the_next_key_is_refused_whole(
    sm: SecurityModule, kmc: MiniKmc
) -> None:
    keys = tuple(loaded_key(f"{100000 + n}") for n in range(25))
    sm.load(kmc.answer(sm.request(None), keys))
    assert len(sm.registers()) == 25
    # A file with one held key (reloaded) and one new key: the new one has no room, so neither is taken.
    more: tuple[LoadedKey, ...] = (keys[0], loaded_key("200000"))
    assert _refused(sm, kmc.answer(sm.request(None), more)) == "registers_full"


def test_reloading_a_held_key_updates_its_attributes_and_keeps_its_counters(
    sm: SecurityModule, kmc: MiniKmc
) -> None:
    key = loaded_key(resource_limit=100)
    sm.load(kmc.answer(sm.request(None), (key,)))
    with sm.store.transaction() as db:
        db.execute("UPDATE key_register SET units_used = 70")
    renewed = dataclasses.replace(key, resource_limit=200)
    sm.load(kmc.answer(sm.request(None), (renewed,)))
    [register] = sm.registers()
    assert (
        register.resource_limit == 200
        and register.units_used_tenths == 70
        and register.sequence == 2
    )


def test_the_same_identity_with_another_key_value_is_refused(
    sm: SecurityModule, kmc: MiniKmc
) -> None:
    sm.load(kmc.answer(sm.request(None), (loaded_key(),)))
    assert _refused(sm, kmc.answer(sm.request(None), (loaded_key(),))) == "key_conflict"


def test_load_cli_prints_one_line_reasons(sm: SecurityModule, kmc: MiniKmc, tmp_path: Path) -> None:
    eklf = tmp_path / "f.eklf"
    eklf.write_bytes(kmc.answer(sm.request(None), (loaded_key(),)))
    sm.close()
    runner = CliRunner()
    first = runner.invoke(
        main,
        ["load", "--state", str(sm.folder), str(eklf)],
        env={"SM_EMULATOR_FAKE_NOW": "2030-03-01T12:00:00Z"},
    )
    assert first.exit_code == 0, first.output
    assert "SGC 123457 KRN 1 KT 2" in first.output
    again = runner.invoke(main, ["load", "--state", str(sm.folder), str(eklf)])
    assert again.exit_code == 1
    assert again.output.count("\n") == 1 and again.output.startswith("sm-emulator: already_loaded:")
    (tmp_path / "junk").write_bytes(b"not an eklf")
    junk = runner.invoke(main, ["load", "--state", str(sm.folder), str(tmp_path / "junk")])
    assert junk.exit_code == 1 and junk.output.startswith("sm-emulator: not_der:")


def _at(sm: SecurityModule, when: dt.datetime) -> SecurityModule:
    """The same SM state folder, opened with its clock at `when`."""
    sm.close()
    return SecurityModule(sm.folder, clock=lambda: when)


def test_a_file_answering_a_request_older_than_a_day_is_refused(
    sm: SecurityModule, kmc: MiniKmc
) -> None:
    der = kmc.answer(sm.request(None), (loaded_key(),), issue_time=NOW + dt.timedelta(hours=1))
    late = _at(sm, NOW + dt.timedelta(hours=24, seconds=1))
    assert _refused(late, der) == "request_expired"


def test_a_file_answering_a_request_within_the_day_is_loaded(
    sm: SecurityModule, kmc: MiniKmc
) -> None:
    der = kmc.answer(sm.request(None), (loaded_key(),), issue_time=NOW + dt.timedelta(hours=23))
    assert _at(sm, NOW + dt.timedelta(hours=24)).load(der).sequence == 1


def test_the_request_lifetime_can_be_set(sm: SecurityModule, kmc: MiniKmc) -> None:
    der = kmc.answer(sm.request(None), (loaded_key(),))
    sm.close()
    short = SecurityModule(
        sm.folder, clock=lambda: NOW + dt.timedelta(hours=2), request_lifetime=dt.timedelta(hours=1)
    )
    assert _refused(short, der) == "request_expired"


@pytest.mark.parametrize(
    ("issued", "reason"),
    [
        (NOW - dt.timedelta(minutes=11), "issued_before_request"),
        (NOW + dt.timedelta(minutes=11), "issued_in_future"),
    ],
)
def test_a_file_issued_before_its_request_or_in_the_future_is_refused(
    sm: SecurityModule, kmc: MiniKmc, issued: dt.datetime, reason: str
) -> None:
    der = kmc.answer(sm.request(None), (loaded_key(),), issue_time=issued)
    assert _refused(sm, der) == reason


@pytest.mark.parametrize("skew", [dt.timedelta(minutes=-10), dt.timedelta(minutes=10)])
def test_issue_time_within_ten_minutes_of_the_clocks_is_accepted(
    sm: SecurityModule, kmc: MiniKmc, skew: dt.timedelta
) -> None:
    der = kmc.answer(sm.request(None), (loaded_key(),), issue_time=NOW + skew)
    assert sm.load(der).sequence == 1


def test_expired_requests_are_no_longer_outstanding_and_are_pruned(
    sm: SecurityModule, kmc: MiniKmc
) -> None:
    sm.request(None)
    later = _at(sm, NOW + dt.timedelta(hours=25))
    assert later.status()["outstanding_requests"] == 0
    later.request(None)
    with later.store.snapshot() as db:
        assert db.execute("SELECT count(*) FROM outstanding_request").fetchone()[0] == 1


def test_load_cli_refuses_an_expired_request_unless_the_lifetime_is_longer(
    sm: SecurityModule, kmc: MiniKmc, tmp_path: Path
) -> None:
    runner, state = CliRunner(), str(sm.folder)
    sm.close()
    request, eklf = tmp_path / "r.der", tmp_path / "f.eklf"
    made = runner.invoke(
        main,
        ["request", "--state", state, "--all", "--out", str(request)],
        env={"SM_EMULATOR_FAKE_NOW": NOW.isoformat()},
    )
    assert made.exit_code == 0, made.output
    eklf.write_bytes(kmc.answer(request.read_bytes(), (loaded_key(),)))
    late = {"SM_EMULATOR_FAKE_NOW": (NOW + dt.timedelta(hours=30)).isoformat()}
    load = ["load", "--state", state, str(eklf)]
    refused = runner.invoke(main, load, env=late)
    assert (refused.exit_code, refused.output) == (
        1,
        "sm-emulator: request_expired: the key-load file answers a request made more than"
        " 24 hours ago\n",
    )
    still = runner.invoke(main, load, env={**late, "SM_EMULATOR_REQUEST_LIFETIME": "29"})
    assert still.exit_code == 1 and "more than 29 hours ago" in still.output
    loaded = runner.invoke(main, ["--request-lifetime", "31", *load], env=late)
    assert loaded.exit_code == 0, loaded.output
