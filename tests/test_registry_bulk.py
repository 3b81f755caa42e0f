"""Bulk registration from a zip archive whose members cannot all be read: each unreadable member
is refused on its own (`bad_zip_member`) and the other members keep their verdicts."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import pytest
from sqlalchemy import select

from factories.csr import make_csr
from kmc.database import db
from sm_registry.models import SecurityModule

# Header layouts from APPNOTE.TXT 4.3.7 (local) and 4.3.12 (central): offsets of the general
# purpose flags, the compression method and the file name length; where the name starts.
LOCAL = {"flags": 6, "method": 8, "name_length": 26, "name": 30}
CENTRAL = {"flags": 8, "method": 10, "name_length": 28, "name": 46}


def _headers(data: bytearray, name: str) -> list[tuple[int, dict[str, int]]]:
    """Where the member's local header and its central directory entry start."""
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name)
    found = [(info.header_offset, LOCAL)]
    at = data.find(b"PK\x01\x02")
    while at != -1:
        length = struct.unpack_from("<H", data, at + CENTRAL["name_length"])[0]
        if data[at + CENTRAL["name"] : at + CENTRAL["name"] + length] == name.encode():
            found.append((at, CENTRAL))
        at = data.find(b"PK\x01\x02", at + 4)
    assert len(found) == 2
    return found


def _set(data: bytearray, name: str, field: str, change) -> None:
    for at, layout in _headers(data, name):
        value = struct.unpack_from("<H", data, at + layout[field])[0]
        struct.pack_into("<H", data, at + layout[field], change(value))


def _body(data: bytearray, name: str) -> slice:
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(name)
    name_length, extra_length = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_length + extra_length
    return slice(start, start + info.compress_size)


def _encrypted(data: bytearray, name: str) -> None:
    _set(data, name, "flags", lambda flags: flags | 0x1)


def _unknown_compression(data: bytearray, name: str) -> None:
    _set(data, name, "method", lambda _: 6)  # "imploded": zipfile cannot read it


def _corrupt_deflate(data: bytearray, name: str) -> None:
    body = _body(data, name)
    data[body] = b"\xff" * (body.stop - body.start)  # BTYPE 11: a reserved block type


def _bad_crc(data: bytearray, name: str) -> None:
    data[_body(data, name).start + 40] ^= 0x01


def _archive(tmp_path, damage) -> bytes:
    path = tmp_path / "csrs.zip"
    deflated = damage is _corrupt_deflate
    with zipfile.ZipFile(path, "w") as archive:
        for smid in ("5001", "5002", "5003"):
            method = zipfile.ZIP_DEFLATED if deflated and smid == "5002" else zipfile.ZIP_STORED
            archive.writestr(f"{smid}.pem", make_csr(smid), compress_type=method)
    data = bytearray(path.read_bytes())
    damage(data, "5002.pem")
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "damage,message",
    [
        (_encrypted, "is encrypted"),
        (_unknown_compression, "compression method"),
        (_corrupt_deflate, "is corrupt"),
        (_bad_crc, "is corrupt"),
    ],
)
def test_an_unreadable_zip_member_is_refused_alone(app, kmc, tmp_path, damage, message):
    path = _archive(tmp_path, damage)
    result = kmc("sm", "register-bulk", str(path), "--kind", "virtual", "--as", "maker1", "--json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert (report["accepted"], report["refused"]) == (2, 1)
    verdicts = {item["name"]: item for item in report["items"]}
    assert [verdicts[n]["result"] for n in ("5001.pem", "5002.pem", "5003.pem")] == [
        "accepted",
        "refused",
        "accepted",
    ]
    assert verdicts["5002.pem"]["reason"] == "bad_zip_member"
    assert message in verdicts["5002.pem"]["message"]
    assert "5002.pem" in verdicts["5002.pem"]["message"]
    with app.app_context():
        assert sorted(db.session.scalars(select(SecurityModule.smid))) == ["5001", "5003"]


def test_the_summary_names_the_unreadable_member(kmc, tmp_path):
    path = _archive(tmp_path, _encrypted)
    result = kmc("sm", "register-bulk", str(path), "--kind", "virtual", "--as", "maker1")
    assert result.exit_code == 1
    assert "2 accepted, 1 refused (of 3)" in result.stdout
    assert "refused 5002.pem: zip member 5002.pem is encrypted" in result.stdout


def test_an_archive_needing_a_newer_zip_version_is_refused_whole(kmc, tmp_path):
    """Found by tests/test_parser_fuzz.py: zipfile's NotImplementedError escaped."""
    path = _archive(tmp_path, lambda data, name: None)
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02")
    data[central + 6] = 64  # "version needed to extract": 6.4, beyond what zipfile reads
    path.write_bytes(bytes(data))
    result = kmc("sm", "register-bulk", str(path), "--kind", "virtual", "--as", "maker1")
    assert result.exit_code == 1
    assert "is not a readable zip archive" in result.output


def test_a_member_without_a_name_is_read_like_any_other(kmc, tmp_path):
    """Found by tests/test_parser_fuzz.py: a member named "" crashed zipfile's is_dir()."""
    path = tmp_path / "csrs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("5001.pem", make_csr("5001"))
        archive.writestr(zipfile.ZipInfo(""), make_csr("5002"))
    result = kmc("sm", "register-bulk", str(path), "--kind", "virtual", "--as", "maker1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accepted"] == 2
