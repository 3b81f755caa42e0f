"""STS token engine: decoder key generation (DKGA02/04), EA07/EA11, token generation and decoding.

Pure Python (no Flask, no database), shared by the KMC, the SM emulator and the meter emulator.
See docs/tokens.md for the API tour and the EA07 tables file format.
"""

from sts_token.amounts import MAX_ENCODABLE, TransferAmount, decode_amount, encode_amount
from sts_token.crc import token_crc
from sts_token.decoding import (
    CreditTransfer,
    DecodedToken,
    KeyChangeSection,
    ManagementInstruction,
    MeterTestInstruction,
    NewKey,
    assemble_key_change,
    decode_key_change,
    decode_token,
)
from sts_token.dkga import derive_decoder_key
from sts_token.ea07 import Ea07Cipher, Ea07Tables, load_ea07_tables
from sts_token.errors import (
    CrcMismatch,
    Ea07TablesInvalid,
    Ea07TablesMissing,
    InvalidAmount,
    InvalidKey,
    InvalidPan,
    InvalidTokenNumber,
    InvalidValue,
    KeyChangeIncomplete,
    KeyRequired,
    TidOutOfRange,
    TokenError,
    UnsupportedOperation,
)
from sts_token.identifiers import (
    BaseDate,
    DecoderKeyAlgorithm,
    EncryptionAlgorithm,
    KeyExpiryNumber,
    KeyRevisionNumber,
    KeyType,
    ManufacturerCode,
    Pan,
    SupplyGroupCode,
    TariffIndex,
)
from sts_token.keys import DecoderKey, KeyParameters, VendingKey
from sts_token.kinds import (
    CreditSubclass,
    KeyChangeSubclass,
    ManagementKind,
    MeterTestSubclass,
    TokenClass,
)
from sts_token.misty1 import Misty1
from sts_token.one_call import (
    CreditRequest,
    KeyChangeRequest,
    MeterConfig,
    Outcome,
    issue_batch,
    issue_credit,
    issue_key_change,
    issue_management,
    issue_many,
    meter_token_key,
)
from sts_token.tid import Tid
from sts_token.token_key import TokenKey
from sts_token.token_number import Token
from sts_token.tokens import (
    credit_token,
    credit_tokens,
    key_change_tokens,
    management_token,
    meter_test_token,
)

__all__ = [
    "MAX_ENCODABLE",
    "BaseDate",
    "CrcMismatch",
    "CreditRequest",
    "CreditSubclass",
    "CreditTransfer",
    "DecodedToken",
    "DecoderKey",
    "DecoderKeyAlgorithm",
    "Ea07Cipher",
    "Ea07Tables",
    "Ea07TablesInvalid",
    "Ea07TablesMissing",
    "EncryptionAlgorithm",
    "InvalidAmount",
    "InvalidKey",
    "InvalidPan",
    "InvalidTokenNumber",
    "InvalidValue",
    "KeyChangeIncomplete",
    "KeyChangeRequest",
    "KeyChangeSection",
    "KeyChangeSubclass",
    "KeyExpiryNumber",
    "KeyParameters",
    "KeyRequired",
    "KeyRevisionNumber",
    "KeyType",
    "ManagementInstruction",
    "ManagementKind",
    "ManufacturerCode",
    "MeterConfig",
    "MeterTestInstruction",
    "MeterTestSubclass",
    "Misty1",
    "NewKey",
    "Outcome",
    "Pan",
    "SupplyGroupCode",
    "TariffIndex",
    "Tid",
    "TidOutOfRange",
    "Token",
    "TokenClass",
    "TokenError",
    "TokenKey",
    "TransferAmount",
    "UnsupportedOperation",
    "VendingKey",
    "assemble_key_change",
    "credit_token",
    "credit_tokens",
    "decode_amount",
    "decode_key_change",
    "decode_token",
    "derive_decoder_key",
    "encode_amount",
    "issue_batch",
    "issue_credit",
    "issue_key_change",
    "issue_management",
    "issue_many",
    "key_change_tokens",
    "load_ea07_tables",
    "management_token",
    "meter_test_token",
    "meter_token_key",
    "token_crc",
]
