"""The HTTP response carrying an EKLF, the same for the web page and the API."""

from __future__ import annotations

from flask import Response

EKLF_MEDIA_TYPE = "application/cms"  # RFC 7193


def eklf_response(eklf: bytes, smid: str, sequence: int) -> Response:
    response = Response(eklf, mimetype=EKLF_MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="eklf-{smid}-{sequence}.der"'
    response.headers["X-KMC-SMID"] = smid
    response.headers["X-KMC-Sequence"] = str(sequence)
    return response
