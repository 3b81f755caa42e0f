"""Token engine throughput on one core: credit tokens/s and decodes/s, with the cipher/KDF floor.

Every figure is per CPU-second of this process (the machine may be shared), the scalar calls
(one token a call) beside the batch engine (`credit_tokens`, `issue_many`: many tokens a call)
in the same run. Run: ``python -m bench tokens``. EA07 figures need the EA07 tables
(``$STS_EA07_TABLES`` or the shared folder next to the repository); without them only the EA11
figures are printed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from sts_token import (
    BaseDate,
    CreditRequest,
    CreditSubclass,
    DecoderKeyAlgorithm,
    Ea07Cipher,
    Ea07Tables,
    EncryptionAlgorithm,
    KeyParameters,
    KeyRevisionNumber,
    KeyType,
    MeterConfig,
    Misty1,
    Pan,
    SupplyGroupCode,
    TariffIndex,
    TokenKey,
    TransferAmount,
    VendingKey,
    credit_token,
    credit_tokens,
    decode_token,
    derive_decoder_key,
    issue_many,
    load_ea07_tables,
    token_crc,
)
from sts_token.identifiers import luhn_check_digit
from sts_token.misty1_batch import encrypt_blocks, key_words

_SECONDS = 1.0
_PAN = Pan("600727000000000009")
_AMOUNT = TransferAmount(256)


_BATCH = 4096  # tokens per batch engine call


def _rate(operation: Callable[[int], object], per_call: int = 1) -> float:
    """Operations per CPU-second of ``operation(i)`` (``per_call`` operations a call) over
    about one CPU-second."""
    count = 0
    batch = max(1, 200 // per_call)
    start = time.process_time()
    while (elapsed := time.process_time() - start) < _SECONDS:
        for i in range(count, count + batch):
            operation(i)
        count += batch
    return count * per_call / elapsed


def _meter_pan(n: int) -> Pan:
    body = f"6007270{n:010d}"
    return Pan(body + luhn_check_digit(body))


def _tables() -> Ea07Tables | None:
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "sts" / "ea07_tables.json"
    path = os.environ.get("STS_EA07_TABLES") or (str(shared) if shared.exists() else None)
    return load_ea07_tables(path) if path else None


def _params(dkga: DecoderKeyAlgorithm, ea: EncryptionAlgorithm) -> KeyParameters:
    return KeyParameters(
        dkga=dkga,
        ea=ea,
        sgc=SupplyGroupCode("123456"),
        tariff_index=TariffIndex(1),
        krn=KeyRevisionNumber(1),
        key_type=KeyType(2),
        base_date=BaseDate(2014),
    )


def _report(label: str, rate: float) -> None:
    print(f"  {label:<52} {rate:>12,.0f} /s", flush=True)


def _token_figures(
    name: str, vending_key: VendingKey, params: KeyParameters, tables: Ea07Tables | None
) -> None:
    start = datetime(2024, 1, 1)
    issue_times = [start + timedelta(minutes=i) for i in range(4096)]

    def per_token(i: int) -> object:
        decoder_key = derive_decoder_key(vending_key, _PAN, params)
        key = TokenKey(decoder_key, params.base_date, ea07_tables=tables)
        return credit_token(key, CreditSubclass.ELECTRICITY, _AMOUNT, issue_times[i & 4095], rnd=5)

    cached = TokenKey(derive_decoder_key(vending_key, _PAN, params), params.base_date,
                      ea07_tables=tables)  # fmt: skip

    def with_cached_key(i: int) -> object:
        time_ = issue_times[i & 4095]
        return credit_token(cached, CreditSubclass.ELECTRICITY, _AMOUNT, time_, rnd=5)

    tokens = [with_cached_key(i) for i in range(4096)]
    amounts, rnds = [_AMOUNT] * _BATCH, [5] * _BATCH

    def batch_cached_key(i: int) -> object:
        return credit_tokens(cached, CreditSubclass.ELECTRICITY, amounts, issue_times, rnds=rnds)

    meters = [
        CreditRequest(vending_key, MeterConfig(_meter_pan(n), params), CreditSubclass.ELECTRICITY,
                      _AMOUNT, issue_times[n], 5)
        for n in range(_BATCH)
    ]  # fmt: skip

    def batch_per_meter(i: int) -> object:
        return list(issue_many(meters, ea07_tables=tables))

    print(f"{name}:")
    _report("credit tokens, decoder key derived per token", _rate(per_token))
    _report("  batch engine: issue_many, key derived per meter", _rate(batch_per_meter, _BATCH))
    _report("credit tokens, cached decoder key", _rate(with_cached_key))
    _report("  batch engine: credit_tokens, cached key", _rate(batch_cached_key, _BATCH))
    _report("decodes (CRC-checked), cached decoder key",
            _rate(lambda i: decode_token(tokens[i & 4095], cached)))  # fmt: skip


def main() -> None:
    """Print token rates for DKGA02+EA07 and DKGA04+EA11, then the primitive floor."""
    tables = _tables()
    vk02 = VendingKey.from_hex("abababababababab")
    vk04 = VendingKey.from_hex("abababababababab949494949494949401234567")
    p02 = _params(DecoderKeyAlgorithm.DKGA02, EncryptionAlgorithm.EA07)
    p04 = _params(DecoderKeyAlgorithm.DKGA04, EncryptionAlgorithm.EA11)
    if tables is None:
        print("DKGA02 + EA07: skipped (no EA07 tables: set STS_EA07_TABLES)")
    else:
        _token_figures("DKGA02 + EA07", vk02, p02, tables)
    _token_figures("DKGA04 + EA11", vk04, p04, tables)

    print("floor (same run):")
    if tables is not None:
        ea07 = Ea07Cipher(bytes.fromhex("e653341f9d5bf36f"), tables)
        _report("EA07 block encryptions", _rate(ea07.encrypt))
        _report("EA07 block decryptions", _rate(ea07.decrypt))
        _report("EA07 key schedules", _rate(lambda i: Ea07Cipher(i.to_bytes(8, "big"), tables)))
    misty = Misty1(bytes.fromhex("00112233445566778899aabbccddeeff"))
    _report("MISTY1 block encryptions", _rate(misty.encrypt))
    words = key_words(bytes.fromhex("00112233445566778899aabbccddeeff"))
    blocks = np.arange(_BATCH, dtype=np.uint64)
    _report("  batch engine, one key", _rate(lambda i: encrypt_blocks(words, blocks), _BATCH))
    per_block = key_words(bytes(range(16)) * _BATCH)
    _report("  batch engine, a key per block (schedule included)",
            _rate(lambda i: encrypt_blocks(per_block, blocks), _BATCH))  # fmt: skip
    _report("MISTY1 block decryptions", _rate(misty.decrypt))
    _report("MISTY1 key schedules", _rate(lambda i: Misty1(i.to_bytes(16, "big"))))
    _report("DKGA02 derivations (DES)", _rate(lambda i: derive_decoder_key(vk02, _PAN, p02)))
    _report("DKGA04 derivations (HMAC-SHA-256)",
            _rate(lambda i: derive_decoder_key(vk04, _PAN, p04)))  # fmt: skip
    _report("CRC-16 of a 50-bit input", _rate(token_crc))


if __name__ == "__main__":
    main()
