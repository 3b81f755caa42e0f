"""One-call issuing: the same tokens as the step-by-step calls; a batch yields one outcome per
meter in order, a refused meter reported with its reason and the rest still issued."""

from __future__ import annotations

import functools
from datetime import datetime

from sts_token import (
    CreditSubclass,
    KeyParameters,
    ManagementKind,
    MeterConfig,
    Pan,
    TokenKey,
    TransferAmount,
    VendingKey,
    credit_token,
    decode_token,
    derive_decoder_key,
    issue_batch,
    issue_credit,
    issue_key_change,
    issue_management,
    key_change_tokens,
    management_token,
)

VENDING = VendingKey(bytes(range(20)))
NEW_VENDING = VendingKey(bytes(range(1, 21)))
PARAMS = KeyParameters.from_values(
    dkga="04", ea="11", sgc="600100", ti=1, krn=1, kt=2, base_date=2014
)
NEW = KeyParameters.from_values(dkga="04", ea="11", sgc="600100", ti=1, krn=2, kt=2, base_date=2014)
METER = MeterConfig(Pan("600727000000000009"), PARAMS)
AT = datetime(2030, 3, 1, 12, 0)


def _key(vending: VendingKey, params: KeyParameters) -> TokenKey:
    return TokenKey(derive_decoder_key(vending, METER.pan, params), params.base_date)


def test_one_call_tokens_equal_the_step_by_step_tokens() -> None:
    amount = TransferAmount.from_decimal("12.5")
    assert issue_credit(VENDING, METER, CreditSubclass.ELECTRICITY, amount, AT, rnd=3) == (
        credit_token(_key(VENDING, PARAMS), CreditSubclass.ELECTRICITY, amount, AT, rnd=3)
    )
    kind = ManagementKind.CLEAR_TAMPER
    assert issue_management(VENDING, METER, kind, 0, AT, rnd=5) == management_token(
        _key(VENDING, PARAMS), kind, 0, AT, rnd=5
    )
    new_decoder = derive_decoder_key(NEW_VENDING, METER.pan, NEW)
    assert issue_key_change(VENDING, METER, NEW_VENDING, NEW) == key_change_tokens(
        _key(VENDING, PARAMS), new_decoder, NEW
    )


def test_a_batch_reports_each_refused_meter_and_issues_the_rest() -> None:
    amount = TransferAmount.from_decimal("1")
    early = datetime(2010, 1, 1)  # before the base date: tid_out_of_range
    calls = [
        functools.partial(issue_credit, VENDING, METER, CreditSubclass.ELECTRICITY, amount, AT),
        functools.partial(issue_credit, VENDING, METER, CreditSubclass.ELECTRICITY, amount, early),
        functools.partial(issue_key_change, VENDING, METER, NEW_VENDING, NEW),
    ]
    outcomes = list(issue_batch(calls))
    assert [o.index for o in outcomes] == [0, 1, 2]
    assert outcomes[1].error == "tid_out_of_range" and not outcomes[1].tokens
    assert decode_token(outcomes[0].tokens[0], _key(VENDING, PARAMS)).amount == amount  # type: ignore[attr-defined]
    assert len(outcomes[2].tokens) == 4 and outcomes[2].error == ""
