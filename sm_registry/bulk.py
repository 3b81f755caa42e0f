"""Where bulk registrations come from: the CSR files in a zip archive or in a folder.

Each file is read up to one byte past the CSR size cap, so an oversized or zip-bomb member costs
at most that much memory and is then refused by `sm_registry.csr` like any other bad item. A zip
member that cannot be read at all (encrypted, an unknown compression method, corrupt data) is
an item refused as `bad_zip_member`; the members before and after it keep their own verdicts.
A file whose name breaks the text rules (kmc.text) or is too long is an item refused so, under
its name escaped or shortened (`named_item`): it is echoed in the verdicts.
"""

from __future__ import annotations

import lzma
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

from kmc import text
from kmc.errors import InvalidInput
from sm_registry.csr import MAX_CSR_BYTES

MAX_ITEMS = 100_000
MAX_ITEM_NAME = 255  # an item's name, echoed in its verdict
# A bulk item: the file's name and its first bytes, or why the file could not be read.
Item = tuple[str, bytes | InvalidInput]

# General-purpose flag bit 0 (APPNOTE.TXT 4.4.4): the member is encrypted.
_ENCRYPTED = 0x1
# What decompressing a corrupt member raises: zipfile itself (bad CRC, bad header), truncated
# data, and the deflate, LZMA and bzip2 (OSError) decoders under it.
_CORRUPT = (zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


def named_item(name: str, data: bytes | InvalidInput) -> Item:
    """An item under a name fit to echo in its verdict, or refused for its name."""
    found = text.problem(name, name=True)
    if found is not None:
        escaped = name.encode("unicode_escape").decode("ascii")[:MAX_ITEM_NAME]
        return escaped, InvalidInput(text.REASON, f"the file name {found}")
    if len(name) > MAX_ITEM_NAME:
        return name[:MAX_ITEM_NAME], InvalidInput(
            "too_long", f"the file name is longer than {MAX_ITEM_NAME} characters"
        )
    return name, data


def _check_count(count: int) -> None:
    if count > MAX_ITEMS:
        raise InvalidInput(
            "too_many_items", f"{count} files; a bulk upload takes at most {MAX_ITEMS}"
        )


def _bad_member(name: str, problem: str) -> InvalidInput:
    return InvalidInput("bad_zip_member", f"zip member {name} {problem}")


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes | InvalidInput:
    """The member's bytes up to the cap, or why it cannot be read."""
    if member.flag_bits & _ENCRYPTED:
        return _bad_member(member.filename, "is encrypted; upload an archive without a password")
    try:
        with archive.open(member) as handle:
            return handle.read(MAX_CSR_BYTES + 1)
    except NotImplementedError:
        return _bad_member(
            member.filename,
            f"uses compression method {member.compress_type}, which the KMC cannot read "
            "(use stored or deflate)",
        )
    except _CORRUPT as error:
        return _bad_member(member.filename, f"is corrupt ({error})")


def zip_items(path: Path) -> tuple[int, Iterator[Item]]:
    """The number of files in the archive and an iterator over its items."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, NotImplementedError):  # the last: a newer zip version
        raise InvalidInput("bad_zip", f"{path.name} is not a readable zip archive") from None
    # ZipInfo.is_dir() fails on a member named "" (a file like any other here).
    members = [m for m in archive.infolist() if not m.filename.endswith("/")]
    _check_count(len(members))

    def read() -> Iterator[Item]:
        with archive:
            for member in members:
                yield named_item(member.filename, _read_member(archive, member))

    return len(members), read()


def folder_items(path: Path) -> tuple[int, Iterator[Item]]:
    """The number of files directly in the folder (sorted by name) and an iterator over them."""
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    _check_count(len(files))

    def read() -> Iterator[Item]:
        for file in files:
            with file.open("rb") as handle:
                yield named_item(file.name, handle.read(MAX_CSR_BYTES + 1))

    return len(files), read()


def items_at(path: Path) -> tuple[int, Iterator[Item]]:
    """Bulk items from a zip archive or a folder."""
    if path.is_dir():
        return folder_items(path)
    if path.is_file():
        return zip_items(path)
    raise InvalidInput("bad_path", f"{path} is neither a folder nor a zip archive")
