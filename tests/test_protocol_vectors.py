"""The worked example of docs/protocol.md: golden files reproduced, opened, and quoted correctly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from factories.example import example_key_load_file, example_request
from key_load_protocol import open_eklf, parse_request
from key_load_protocol.codec import decode_key_load_file
from tests.data.protocol.generate import FOLDER, key_agreement_steps, vectors

DOCS = Path(__file__).parent.parent / "docs" / "protocol.md"


def _golden(name: str) -> bytes:
    return (FOLDER / name).read_bytes()


def _sm_key() -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(_golden("sm.key"), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


@pytest.mark.parametrize("name", sorted(vectors()))
def test_generator_reproduces_the_golden_file(name: str) -> None:
    assert vectors()[name] == _golden(name)


def test_golden_eklf_opens_to_the_example_key_load_file() -> None:
    klf = open_eklf(
        _golden("eklf.der"),
        trusted_root=x509.load_pem_x509_certificate(_golden("root.pem")),
        sm_private_key=_sm_key(),
    )
    assert klf == example_key_load_file()


def test_golden_vkloadreq_verifies_as_the_example_request() -> None:
    parsed = parse_request(_golden("vkloadreq.der"))
    parsed.verify(x509.load_pem_x509_certificate(_golden("sm.pem")))
    assert parsed.request == example_request()


def test_golden_key_load_file_parses_to_the_example() -> None:
    assert decode_key_load_file(_golden("keyloadfile.der")) == example_key_load_file()


def test_golden_envelope_matches_the_key_agreement_steps_computed_independently() -> None:
    signed = cms.ContentInfo.load(_golden("eklf.der"))
    envelope = cms.ContentInfo.load(signed["content"]["encap_content_info"]["content"].native)
    agreement = envelope["content"]["recipient_infos"][0].chosen
    steps = key_agreement_steps()
    originator = agreement["originator"].chosen["public_key"].contents[1:]
    assert originator == steps["ephemeral public key"]
    encrypted_key = agreement["recipient_encrypted_keys"][0]["encrypted_key"].native
    assert encrypted_key == steps["encryptedKey"]
    content = envelope["content"]["encrypted_content_info"]
    assert content["content_encryption_algorithm"]["parameters"].native == steps["IV"]


def _quoted_blocks() -> dict[str, bytes]:
    text = DOCS.read_text()
    blocks = re.findall(r"<!-- vector: (\S+) -->\n```text\n([0-9a-f\n]+)```", text)
    return {name: bytes.fromhex(hex_text.replace("\n", "")) for name, hex_text in blocks}


def test_docs_quote_every_golden_message_exactly() -> None:
    quoted = _quoted_blocks()
    assert sorted(quoted) == ["eklf.der", "keyloadfile.der", "vkloadreq.der"]
    for name, data in quoted.items():
        assert data == _golden(name), name


def test_docs_quote_the_key_agreement_steps() -> None:
    text = DOCS.read_text()
    for name, value in key_agreement_steps().items():
        assert f"| {name} | `{value.hex()}` |" in text, name
