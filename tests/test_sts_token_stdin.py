"""`sts-token --stdin`: one JSON request per line in, one JSON answer per line out, in order;
a bad line gets its refusal and the next lines are still answered."""

from __future__ import annotations

import json

from click.testing import CliRunner

from sts_token.cli import main
from tests.test_sts_token_batch import AT, ROW, _expected

CHANGE = {
    **{k: ROW[k] for k in ("vending_key", "dkga", "ea", "sgc", "ti", "krn", "kt", "base_date")},
    "pan": ROW["pan"], "new_sgc": "600100", "new_ti": "01", "new_krn": "2", "new_kt": "2",
    "new_base_date": "2014",
}  # fmt: skip


def _answers(lines: list[str], *options: str) -> list[dict[str, object]]:
    result = CliRunner().invoke(main, ["--stdin", *options], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.output.splitlines()]


def test_each_line_gets_its_answer_in_order() -> None:
    lines = [
        json.dumps({"kind": "credit", **ROW}),
        json.dumps({"kind": "credit", **ROW, "amount": 20, "krn": 1}),  # JSON numbers too
        json.dumps({"kind": "key-change", **CHANGE}),
    ]
    first, second, change = _answers(lines, "--at", AT)
    assert first == {"tokens": [_expected(ROW)]}
    assert second == {"tokens": [_expected({**ROW, "amount": "20"})]}
    assert isinstance(change["tokens"], list) and len(change["tokens"]) == 4  # DKGA04: 4 tokens


def test_a_line_may_carry_its_own_issue_time() -> None:
    [answer] = _answers([json.dumps({"kind": "credit", **ROW, "at": AT})])
    assert answer == {"tokens": [_expected(ROW)]}


def test_bad_lines_are_refused_one_by_one_and_the_rest_answered() -> None:
    lines = [
        "not json",
        json.dumps({"kind": "refund", **ROW}),
        json.dumps({"kind": "credit", **ROW, "pan": "600727000000000001"}),
        json.dumps({"kind": "credit", **ROW, "at": "yesterday"}),
        json.dumps({"kind": "credit", **ROW}),  # no tid, no at, no --at
        "",
        json.dumps({"kind": "credit", **ROW, "at": AT}),
    ]
    answers = _answers(lines)
    assert [a.get("error") for a in answers] == [
        "invalid_value", "invalid_value", "invalid_pan", "invalid_value", "invalid_value", None,
    ]  # fmt: skip
    assert answers[-1] == {"tokens": [_expected(ROW)]}
    assert all(ROW["vending_key"] not in json.dumps(a) for a in answers)


def test_stdin_takes_no_command() -> None:
    result = CliRunner().invoke(main, ["--stdin", "test"])
    assert result.exit_code == 2
    assert "--stdin and its --at take no command" in result.output
