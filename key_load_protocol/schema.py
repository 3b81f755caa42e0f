"""The ASN.1 module of the key-load protocol, as asn1crypto classes (text in docs/protocol.md).

Object identifiers live under a UUID arc (ITU-T X.667, `2.25.<UUID as integer>`), which anyone
may mint without registration. Tags are IMPLICIT unless marked.
"""

# asn1crypto ships no type hints, so its base classes are `Any` to mypy; subclassing them is fine.
# mypy: disable-error-code="misc"

from __future__ import annotations

from asn1crypto import core

ID_KEY_LOAD = "2.25.183673205267370210918302239409037768677"
ID_MOD_KEY_LOAD = f"{ID_KEY_LOAD}.0"
ID_CT_VK_LOAD_REQUEST = f"{ID_KEY_LOAD}.1"
ID_CT_ENHANCED_KEY_LOAD_FILE = f"{ID_KEY_LOAD}.2"
# Sub-arc 20: extended key usages naming what each KMC certificate may sign, so that a
# certificate merely chaining to the KMC root (an SM's, the audit signer's) cannot sign an EKLF.
ID_KMC_KEY_PURPOSES = f"{ID_KEY_LOAD}.20"
ID_KP_KMC_KEY_LOAD_SIGNING = f"{ID_KMC_KEY_PURPOSES}.1"
ID_KP_KMC_AUDIT_SIGNING = f"{ID_KMC_KEY_PURPOSES}.2"

# RFC 5753 / SEC 1: ephemeral-static ECDH with the ANSI X9.63 KDF over SHA-384.
ID_DH_SINGLE_PASS_STD_DH_SHA384_KDF = "1.3.132.1.11.2"
ID_AES192_WRAP = "2.16.840.1.101.3.4.1.25"
ID_AES256_CBC = "2.16.840.1.101.3.4.1.42"
ID_SECP384R1 = "1.3.132.0.34"
# The standard identifiers the encoders write (RFC 5652, RFC 5754, RFC 5480).
ID_DATA = "1.2.840.113549.1.7.1"
ID_SIGNED_DATA = "1.2.840.113549.1.7.2"
ID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
ID_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ID_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
ID_SIGNING_TIME = "1.2.840.113549.1.9.5"
ID_SHA384 = "2.16.840.1.101.3.4.2.2"
ID_ECDSA_WITH_SHA384 = "1.2.840.10045.4.3.3"
ID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"


class KeyIdentity(core.Sequence):
    _fields = [
        ("sgc", core.NumericString),
        ("krn", core.Integer),
        ("kt", core.Integer),
    ]


class KeyIdentities(core.SequenceOf):
    _child_spec = KeyIdentity


class RequestedKeys(core.Choice):
    _alternatives = [
        ("all_authorised", core.Null, {"implicit": 0}),
        ("listed", KeyIdentities, {"implicit": 1}),
    ]


class VKLoadRequest(core.Sequence):
    _fields = [
        ("version", core.Integer),
        ("smid", core.NumericString),
        ("nonce", core.OctetString),
        ("request_time", core.GeneralizedTime),
        ("keys", RequestedKeys),
    ]


class EncryptionAlgorithms(core.SequenceOf):
    _child_spec = core.NumericString


class DecimalAmount(core.Sequence):
    _fields = [
        ("significand", core.Integer),
        ("decimals", core.Integer),
    ]


class LoadedKey(core.Sequence):
    _fields = [
        ("identity", KeyIdentity),
        ("ken", core.Integer),
        ("base_date", core.Integer),
        ("dkga", core.NumericString),
        ("allowed_eas", EncryptionAlgorithms),
        ("key_value", core.OctetString),
        ("key_check_value", core.OctetString),
        ("activation_time", core.GeneralizedTime),
        ("expiry_time", core.GeneralizedTime),
        ("issue_until_time", core.GeneralizedTime),
        ("credit_limit", DecimalAmount, {"implicit": 0, "optional": True}),
        ("resource_limit", core.Integer, {"implicit": 1, "optional": True}),
        ("refresh_days", core.Integer, {"implicit": 2, "optional": True}),
    ]


class LoadedKeys(core.SequenceOf):
    _child_spec = LoadedKey


class KeyLoadFile(core.Sequence):
    _fields = [
        ("version", core.Integer),
        ("smid", core.NumericString),
        ("request_nonce", core.OctetString),
        ("issue_time", core.GeneralizedTime),
        ("sequence", core.Integer),
        ("kmc_id", core.UTF8String),
        ("keys", LoadedKeys),
    ]
