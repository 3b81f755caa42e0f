"""The media types of key-load files over HTTP, and the response carrying an EKLF (the same for
the web page and the API)."""

from __future__ import annotations

from flask import Response

EKLF_MEDIA_TYPE = "application/cms"  # RFC 7193
# What a VKLOADREQ may be sent as: CMS (RFC 7193), its S/MIME name (RFC 8551), or plain bytes.
REQUEST_MEDIA_TYPES = (EKLF_MEDIA_TYPE, "application/pkcs7-mime", "application/octet-stream")


def eklf_response(eklf: bytes, smid: str, sequence: int) -> Response:
    response = Response(eklf, mimetype=EKLF_MEDIA_TYPE)
    response.headers["Content-Disposition"] = f'attachment; filename="eklf-{smid}-{sequence}.der"'
    response.headers["X-KMC-SMID"] = smid
    response.headers["X-KMC-Sequence"] = str(sequence)
    return response
