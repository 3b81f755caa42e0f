"""`kmc keyload`: process a VKLOADREQ file into an EKLF file, list what was issued."""

from __future__ import annotations

from pathlib import Path

import click

from key_load import service
from kmc.command_line import KmcGroup, acting, emit, json_option
from kmc.permissions import Caller, Permission


@click.group(cls=KmcGroup)
def keyload() -> None:
    """Key loading: VKLOADREQ in, EKLF out (docs/keys.md)."""


@keyload.command("process")
@click.option(
    "--request",
    "request_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The VKLOADREQ (DER) an SM produced.",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write the EKLF (DER); not written when the request is refused.",
)
@json_option
@acting(Permission.KEYS_LOAD)
def keyload_process(caller: Caller, request_path: Path, out: Path, as_json: bool) -> None:
    """Check a VKLOADREQ and write the EKLF; any refusal writes nothing and exits 1."""
    with request_path.open("rb") as handle:
        # Read one byte past the cap so the service refuses an oversized file unread.
        der = handle.read(service.MAX_REQUEST_SIZE + 1)
    issued = service.process_request(caller, der)
    out.write_bytes(issued.eklf)
    emit(
        {**issued.as_dict(), "out": str(out)},
        as_json,
        f"issued EKLF #{issued.sequence} to SM {issued.smid} with {len(issued.keys)} key(s): "
        + ", ".join(f"{k['sgc']}/{k['krn']}/{k['kt']} KCV {k['kcv']}" for k in issued.keys)
        + f"; wrote {out}",
    )


@keyload.command("list")
@click.option("--smid", help="Only this SM.")
@json_option
def keyload_list(smid: str | None, as_json: bool) -> None:
    """List issued EKLFs (newest first)."""
    rows = [service.describe_issue(i) for i in service.list_issues(smid)]
    emit(
        rows,
        as_json,
        lambda: (
            "\n".join(
                f"{r['issued_at']} SM {r['smid']} #{r['sequence']} {len(r['keys'])} key(s) "
                f"by {r['issued_by']} file {r['file_sha256'][:16]}…"
                for r in rows
            )
            or "no key-load files issued"
        ),
    )


COMMANDS = (keyload,)
