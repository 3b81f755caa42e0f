"""Where bulk registrations come from: the CSR files in a zip archive or in a folder.

Each file is read up to one byte past the CSR size cap, so an oversized or zip-bomb member costs
at most that much memory and is then refused by `sm_registry.csr` like any other bad item.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

from kmc.errors import InvalidInput
from sm_registry.csr import MAX_CSR_BYTES

MAX_ITEMS = 100_000


def _check_count(count: int) -> None:
    if count > MAX_ITEMS:
        raise InvalidInput(
            "too_many_items", f"{count} files; a bulk upload takes at most {MAX_ITEMS}"
        )


def zip_items(path: Path) -> tuple[int, Iterator[tuple[str, bytes]]]:
    """The number of files in the archive and an iterator over (name, bytes)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise InvalidInput("bad_zip", f"{path.name} is not a readable zip archive") from None
    members = [m for m in archive.infolist() if not m.is_dir()]
    _check_count(len(members))

    def read() -> Iterator[tuple[str, bytes]]:
        with archive:
            for member in members:
                with archive.open(member) as handle:
                    yield member.filename, handle.read(MAX_CSR_BYTES + 1)

    return len(members), read()


def folder_items(path: Path) -> tuple[int, Iterator[tuple[str, bytes]]]:
    """The number of files directly in the folder (sorted by name) and an iterator over them."""
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    _check_count(len(files))

    def read() -> Iterator[tuple[str, bytes]]:
        for file in files:
            with file.open("rb") as handle:
                yield file.name, handle.read(MAX_CSR_BYTES + 1)

    return len(files), read()


def items_at(path: Path) -> tuple[int, Iterator[tuple[str, bytes]]]:
    """Bulk items from a zip archive or a folder."""
    if path.is_dir():
        return folder_items(path)
    if path.is_file():
        return zip_items(path)
    raise InvalidInput("bad_path", f"{path} is neither a folder nor a zip archive")
