"""Every parser on the trust boundary, fed broken input (factories.mutations: structure-aware DER
edits, byte edits, random bytes), refuses it with its documented exception and nothing else:
CSRs, bulk zip archives, the DER walk, EKLFs on the SM side and the EA07 tables file. (VKLOADREQs,
key-load files and EKLFs on the protocol side: tests/test_protocol_codec.py.) docs/fuzzing.md
lists the counts."""

from __future__ import annotations

import io
import itertools
import json
import os
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from factories.csr import make_csr
from factories.emulator import MiniKmc, loaded_key, ready_sm
from factories.mutations import mutations
from key_load_protocol.der import encoding_problem
from kmc import text
from kmc.errors import KMCError
from sm_emulator.errors import LoadRefused
from sm_registry.bulk import zip_items
from sm_registry.csr import parse_request
from sts_token.ea07 import ENV_VAR, Ea07Tables
from sts_token.errors import Ea07TablesInvalid
from tests.data.protocol.generate import FOLDER

# Hypothesis examples per parser: the one bound (the DER walk is cheap and gets five times as
# many, the SM's EKLF loading and the EA07 tables half as many; docs/fuzzing.md).
EXAMPLES = 200
_ONCE = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_FILES = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


CSR_DER = make_csr("1001", der=True)
CSR_PEM = make_csr("1002")


@_ONCE
@given(st.one_of(mutations(CSR_DER), mutations(CSR_PEM, der=False)))
def test_a_broken_csr_is_refused_with_a_reason(data: bytes) -> None:
    try:
        parse_request(data)
    except KMCError as refused:
        assert refused.http_status in (400, 422) and refused.reason


def _archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("stored.pem", CSR_PEM, compress_type=zipfile.ZIP_STORED)
        archive.writestr("deflated.der", CSR_DER, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


@_ONCE
@given(data=mutations(_archive(), der=False))
def test_a_broken_zip_upload_is_refused_whole_or_item_by_item(data: bytes, folder: Path) -> None:
    path = folder / f"upload-{next(_FILES)}.zip"
    path.write_bytes(data)
    try:
        count, items = zip_items(path)
        read = list(items)
    except KMCError as refused:
        assert refused.reason in ("bad_zip", "too_many_items")
        return
    assert len(read) == count
    for _name, item in read:
        if isinstance(item, KMCError):
            # A member the archive cannot give, or a member refused for its name (a mutated
            # name byte can be a control character): the item refusals of sm_registry.bulk.
            if item.reason != "bad_zip_member":
                assert item.reason in (text.REASON, "too_long"), item.reason
                assert item.message.startswith("the file name"), item.message
            continue
        try:
            parse_request(item)
        except KMCError:
            pass


GOLDEN_DER = [(FOLDER / name).read_bytes() for name in ("vkloadreq.der", "eklf.der")]


@settings(max_examples=5 * EXAMPLES, deadline=None)
@given(st.one_of(*(mutations(der) for der in GOLDEN_DER), mutations(CSR_DER)))
def test_the_der_walk_answers_every_input(data: bytes) -> None:
    problem = encoding_problem(data)
    assert problem is None or isinstance(problem, str)


@pytest.fixture(scope="module")
def sm_and_eklf(folder: Path) -> tuple[object, bytes]:
    kmc = MiniKmc()
    sm = ready_sm(folder / "sm", kmc)
    return sm, kmc.answer(sm.request(None), (loaded_key(krn=1),))


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(data=st.data())
def test_a_broken_eklf_is_refused_by_the_sm(data: st.DataObject, sm_and_eklf) -> None:
    """What the SM refuses it refuses as LoadRefused; a change to unsigned bytes may still
    open, and then the file loads at most once (its request is answered)."""
    sm, eklf = sm_and_eklf
    try:
        sm.load(data.draw(mutations(eklf)))
    except LoadRefused as refused:
        assert refused.reason


def _tables() -> dict[str, object]:
    path = os.environ.get(ENV_VAR)
    if not path or not Path(path).is_file():
        pytest.skip(f"{ENV_VAR} names no EA07 tables file", allow_module_level=False)
    return dict(json.loads(Path(path).read_text()))


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=5,
)


def _table_edits(tables: dict[str, object]) -> st.SearchStrategy[bytes]:
    """Structure-aware edits of the tables: a table or one of its entries replaced by any JSON
    value, a table dropped or cut short; then the file's bytes edited as well."""
    names = sorted(tables)

    def edit(choice: tuple[int, int, int, object]) -> bytes:
        name, kind, index, value = names[choice[0] % len(names)], *choice[1:]
        edited = dict(tables)
        table = list(edited[name])  # type: ignore[call-overload]
        if kind == 0:
            edited[name] = value
        elif kind == 1:
            del edited[name]
        elif kind == 2:
            edited[name] = table[: index % len(table)]
        else:
            table[index % len(table)] = value
            edited[name] = table
        return json.dumps(edited, allow_nan=True).encode()

    structured = st.tuples(
        st.integers(0, len(names) - 1), st.integers(0, 3), st.integers(0, 63), _JSON_VALUES
    ).map(edit)
    return structured | mutations(json.dumps(tables).encode(), der=False)


@pytest.fixture(scope="module")
def tables() -> dict[str, object]:
    return _tables()


@settings(max_examples=EXAMPLES // 2, deadline=None)
@given(data=st.data())
def test_a_broken_ea07_tables_file_is_refused(
    data: st.DataObject, tables: dict[str, object], folder: Path
) -> None:
    path = folder / f"tables-{next(_FILES)}.json"
    path.write_bytes(data.draw(_table_edits(tables)))
    try:
        Ea07Tables.load(path)
    except Ea07TablesInvalid as refused:
        assert str(refused).startswith("EA07 tables")
