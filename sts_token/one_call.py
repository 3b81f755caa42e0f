"""One-call token issuing: a meter's configuration and a vending key in, tokens out.

The three steps every caller otherwise repeats (derive the decoder key, build the token key,
make the token) in one call each, for credit, management and key change sets, and two batch
calls over many meters that yield one outcome per meter in input order (a refused meter does
not stop the batch): `issue_many` for credit and key change requests, whose EA11 tokens are
made a chunk at a time by the batch engine, and `issue_batch` for any issuing calls. The tokens
are exactly those of the step-by-step calls.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sts_token.amounts import TransferAmount
from sts_token.dkga import derive_decoder_key
from sts_token.ea07 import Ea07Tables
from sts_token.errors import TokenError
from sts_token.identifiers import EncryptionAlgorithm, Pan
from sts_token.keys import KeyParameters, VendingKey
from sts_token.kinds import CreditSubclass, ManagementKind, TokenClass
from sts_token.tid import Tid
from sts_token.token_batch import ea11_tokens
from sts_token.token_key import TokenKey
from sts_token.token_number import Token
from sts_token.tokens import (
    credit_payload,
    credit_token,
    key_change_sections,
    key_change_tokens,
    management_token,
)


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


@dataclass(frozen=True)
class CreditRequest:
    """One meter's credit token, as `issue_credit` takes it."""

    vending_key: VendingKey
    meter: MeterConfig
    subclass: CreditSubclass
    amount: TransferAmount
    issued: datetime | Tid
    rnd: int | None = None


@dataclass(frozen=True)
class KeyChangeRequest:
    """One meter's key change set, as `issue_key_change` takes it."""

    vending_key: VendingKey
    meter: MeterConfig
    new_vending_key: VendingKey
    new_params: KeyParameters
    rollover: bool | None = None


Request = CreditRequest | KeyChangeRequest
CHUNK = 4096  # requests per pass of the batch engine
# Below this many requests one engine pass costs more than the scalar calls (measured: ~8).
ENGINE_FROM = 8


def _scalar(request: Request, ea07_tables: Ea07Tables | None) -> tuple[Token, ...]:
    if isinstance(request, CreditRequest):
        return (
            issue_credit(
                request.vending_key, request.meter, request.subclass, request.amount,
                request.issued, rnd=request.rnd, ea07_tables=ea07_tables,
            ),
        )  # fmt: skip
    return issue_key_change(
        request.vending_key, request.meter, request.new_vending_key, request.new_params,
        rollover=request.rollover, ea07_tables=ea07_tables,
    )  # fmt: skip


def _sections(request: Request, rnd: int) -> tuple[bytes, TokenClass, list[tuple[int, int]]]:
    """An EA11 request's decoder key, token class and (subclass, payload) per token; a credit
    token without an RND of its own gets ``rnd``."""
    meter = request.meter
    key = derive_decoder_key(request.vending_key, meter.pan, meter.params)
    if isinstance(request, CreditRequest):
        own = rnd if request.rnd is None else request.rnd
        payload = credit_payload(meter.params.base_date, request.amount, request.issued, own)
        return key.value, TokenClass.CREDIT, [(CreditSubclass(request.subclass), payload)]
    new_key = derive_decoder_key(request.new_vending_key, meter.pan, request.new_params)
    sections = key_change_sections(
        key.ea, meter.params.base_date, new_key, request.new_params, request.rollover
    )
    return key.value, TokenClass.MANAGEMENT, [(int(sub), payload) for sub, payload in sections]


def _chunk(
    start: int, requests: list[Request], ea07_tables: Ea07Tables | None
) -> Iterator[Outcome]:
    outcomes: list[Outcome | int] = []  # an outcome, or the number of EA11 tokens it awaits
    keys: list[bytes] = []
    classes: list[int] = []
    subclasses: list[int] = []
    payloads: list[int] = []
    # CSPRNG nibbles, drawn for the chunk at once, for credit tokens without an RND.
    rnds = secrets.token_bytes(len(requests))
    scalar = len(requests) < ENGINE_FROM
    for index, (request, rnd) in enumerate(zip(requests, rnds, strict=True), start):
        try:
            if scalar or request.meter.params.ea is EncryptionAlgorithm.EA07:
                outcomes.append(Outcome(index, tokens=_scalar(request, ea07_tables)))
                continue
            key, token_class, sections = _sections(request, rnd & 0xF)
        except TokenError as error:
            outcomes.append(Outcome(index, error=error.reason, message=error.message))
            continue
        outcomes.append(len(sections))
        for subclass, payload in sections:
            keys.append(key)
            classes.append(token_class)
            subclasses.append(subclass)
            payloads.append(payload)
    tokens = iter(ea11_tokens(keys, classes, subclasses, payloads))
    for index, outcome in enumerate(outcomes, start):
        if isinstance(outcome, int):
            yield Outcome(index, tokens=tuple(itertools.islice(tokens, outcome)))
        else:
            yield outcome


def issue_many(
    requests: Iterable[Request], *, ea07_tables: Ea07Tables | None = None
) -> Iterator[Outcome]:
    """One outcome per request, in order: the tokens of `issue_credit` / `issue_key_change`
    for it, or why it was refused (a `TokenError` refuses that request only).

    Lazily, `CHUNK` requests at a time (memory flat in the number of meters); the EA11 tokens of
    a chunk, every meter under its own key, are made in one pass of the batch engine (a chunk of
    fewer than `ENGINE_FROM` requests, and EA07, take the scalar calls).
    """
    source = iter(requests)
    start = 0
    while chunk := list(itertools.islice(source, CHUNK)):
        yield from _chunk(start, chunk, ea07_tables)
        start += len(chunk)
