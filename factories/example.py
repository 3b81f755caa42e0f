"""The fixed inputs of the worked example in docs/protocol.md, also the tests' sample messages.

Every value here is public test data: the keys are derived from labels (see `pki.fixed_key`),
the nonce, CEK and IV are SHA-384 prefixes of labels.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from decimal import Decimal

from factories.pki import SMID, fixed_key
from key_load_protocol import KeyIdentity, KeyLoadFile, KeyLoadRequest, LoadedKey

REQUEST_TIME = dt.datetime(2026, 6, 1, 9, 30, tzinfo=dt.UTC)
ISSUE_TIME = dt.datetime(2026, 6, 1, 9, 31, 15, tzinfo=dt.UTC)
KMC_ID = "Example Utility KMC"
SEQUENCE = 1


def label_bytes(label: str, length: int) -> bytes:
    """The first `length` bytes of SHA-384(label): fixed 'random' values for the example."""
    return hashlib.sha384(label.encode()).digest()[:length]


NONCE = label_bytes("request-nonce", 32)
CEK = label_bytes("content-encryption-key", 32)
IV = label_bytes("content-iv", 16)
EPHEMERAL_KEY = fixed_key("kmc-ephemeral")

DES_KEY = bytes.fromhex("0123456789abcdef")
HMAC_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f10111213")


def example_request() -> KeyLoadRequest:
    return KeyLoadRequest(
        smid=SMID,
        nonce=NONCE,
        request_time=REQUEST_TIME,
        keys=(KeyIdentity("123456", 1, 0), KeyIdentity("600727", 2, 2)),
    )


def example_keys() -> tuple[LoadedKey, ...]:
    activation = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    return (
        LoadedKey(
            identity=KeyIdentity("123456", 1, 0),
            ken=255,
            base_date=1993,
            dkga="02",
            eas=frozenset({"07"}),
            key_value=DES_KEY,
            act=activation,
            exp=dt.datetime(2031, 6, 1, tzinfo=dt.UTC),
            iut=dt.datetime(2030, 6, 1, tzinfo=dt.UTC),
        ),
        LoadedKey(
            identity=KeyIdentity("600727", 2, 2),
            ken=1,
            base_date=2014,
            dkga="04",
            eas=frozenset({"07", "11"}),
            key_value=HMAC_KEY,
            act=activation,
            exp=dt.datetime(2036, 6, 1, tzinfo=dt.UTC),
            iut=dt.datetime(2035, 6, 1, tzinfo=dt.UTC),
            clm=Decimal("250.00"),
            resource_limit=5000,
            refresh_days=30,
        ),
    )


def example_key_load_file() -> KeyLoadFile:
    return KeyLoadFile(
        smid=SMID,
        nonce=NONCE,
        issue_time=ISSUE_TIME,
        sequence=SEQUENCE,
        kmc_id=KMC_ID,
        keys=example_keys(),
    )


def key_load_file_with(count: int) -> KeyLoadFile:
    """The example file with `count` DKGA04 keys of distinct identities (tests, benchmark)."""
    template = example_keys()[1]
    keys = tuple(
        dataclasses.replace(template, identity=KeyIdentity(f"{n:06d}", 1 + n % 9, n % 4))
        for n in range(count)
    )
    return dataclasses.replace(example_key_load_file(), keys=keys)
