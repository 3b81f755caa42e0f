"""One-call token issuing: a meter's configuration and a vending key in, tokens out.

The three steps every caller otherwise repeats (derive the decoder key, build the token key,
make the token) in one call each, for credit, management and key change sets, and a batch call
over many meters that yields one outcome per meter in input order (a refused meter does not
stop the batch). The tokens are exactly those of the step-by-step calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sts_token.amounts import TransferAmount
from sts_token.dkga import derive_decoder_key
from sts_token.ea07 import Ea07Tables
from sts_token.errors import TokenError
from sts_token.identifiers import Pan
from sts_token.keys import KeyParameters, VendingKey
from sts_token.kinds import CreditSubclass, ManagementKind
from sts_token.tid import Tid
from sts_token.token_key import TokenKey
from sts_token.token_number import Token
from sts_token.tokens import credit_token, key_change_tokens, management_token


@dataclass(frozen=True)
class MeterConfig:
    """What names one meter's key: its PAN and key parameters (SGC, TI, KRN, KT, KEN, base
    date, DKGA, EA)."""

    pan: Pan
    params: KeyParameters


def meter_token_key(
    vending_key: VendingKey, meter: MeterConfig, *, ea07_tables: Ea07Tables | None = None
) -> TokenKey:
    """The meter's token key, derived from the vending key."""
    decoder = derive_decoder_key(vending_key, meter.pan, meter.params)
    return TokenKey(decoder, meter.params.base_date, ea07_tables=ea07_tables)


def issue_credit(
    vending_key: VendingKey,
    meter: MeterConfig,
    subclass: CreditSubclass,
    amount: TransferAmount,
    issued: datetime | Tid,
    *,
    rnd: int | None = None,
    ea07_tables: Ea07Tables | None = None,
) -> Token:
    """A credit token for `meter`."""
    key = meter_token_key(vending_key, meter, ea07_tables=ea07_tables)
    return credit_token(key, subclass, amount, issued, rnd=rnd)


def issue_management(
    vending_key: VendingKey,
    meter: MeterConfig,
    kind: ManagementKind,
    value: int,
    issued: datetime | Tid,
    *,
    rnd: int | None = None,
    ea07_tables: Ea07Tables | None = None,
) -> Token:
    """A management token for `meter`."""
    key = meter_token_key(vending_key, meter, ea07_tables=ea07_tables)
    return management_token(key, kind, value, issued, rnd=rnd)


def issue_key_change(
    vending_key: VendingKey,
    meter: MeterConfig,
    new_vending_key: VendingKey,
    new_params: KeyParameters,
    *,
    rollover: bool | None = None,
    ea07_tables: Ea07Tables | None = None,
) -> tuple[Token, ...]:
    """The key change set moving `meter` to the key `new_params` derives from `new_vending_key`."""
    key = meter_token_key(vending_key, meter, ea07_tables=ea07_tables)
    new_key = derive_decoder_key(new_vending_key, meter.pan, new_params)
    return key_change_tokens(key, new_key, new_params, rollover=rollover)


@dataclass(frozen=True)
class Outcome:
    """One batch item's result: its tokens, or the reason and message it was refused."""

    index: int
    tokens: tuple[Token, ...] = ()
    error: str = ""
    message: str = ""


def issue_batch(
    items: Iterable[Callable[[], Token | tuple[Token, ...]]],
) -> Iterator[Outcome]:
    """Run one issuing call per meter, lazily and in order (memory flat in the number of meters).

    Each item is a zero-argument call, e.g. `functools.partial(issue_credit, key, meter, ...)`;
    a `TokenError` refuses that item only.
    """
    for index, item in enumerate(items):
        try:
            result = item()
        except TokenError as error:
            yield Outcome(index, error=error.reason, message=error.message)
            continue
        yield Outcome(index, tokens=result if isinstance(result, tuple) else (result,))
