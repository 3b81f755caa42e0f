"""Online key loading: the SM asks the KMC for its keys itself and loads the answer, one step.

    POST {kmc}/api/v1/sm/keyload                 the signed VKLOADREQ in, the EKLF out
    GET  {kmc}/api/v1/sm/keyload/issues/{seq}    the same EKLF again, for the same request
                                                 (`Authorization: VKLOADREQ <base64 DER>`)

No bearer token: the request's signature under the SM's KMC certificate is the authentication
(docs/protocol.md, "Online key loading"). If the answer is lost on the way (the connection drops
after the KMC issued the EKLF), the SM sends the same request again: the KMC refuses it as a
replay naming the sequence of the EKLF it answered with (409 `replayed_nonce`), and the SM
fetches that EKLF; if the first request never reached the KMC, the second is simply answered.
Either way the KMC issues one EKLF per request, never two. Standard library only (urllib),
TLS verified against `--ca` or the system's roots.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from key_load_protocol import KeyIdentity
from sm_emulator.errors import SmError
from sm_emulator.module import Loaded, SecurityModule

ONLINE_PATH = "/api/v1/sm/keyload"
MEDIA_TYPE = "application/cms"
TIMEOUT_SECONDS = 30
MAX_EKLF_BYTES = 1024 * 1024


class KmcRefused(SmError):
    """The KMC answered with a refusal (its reason and message), or could not be reached."""


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes


@dataclass(frozen=True)
class Kmc:
    """Where the KMC is and which CA certifies its TLS certificate (None: the system's)."""

    url: str
    ca: Path | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("https://", "http://")):
            raise KmcRefused("invalid_kmc_url", "the KMC URL must start with https:// or http://")

    def _context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https://"):
            return None
        return ssl.create_default_context(cafile=None if self.ca is None else str(self.ca))

    def _send(self, request: urllib.request.Request) -> _Answer:
        """The KMC's answer; a dropped connection or timeout raises OSError or HTTPException."""
        try:
            with urllib.request.urlopen(
                request, timeout=TIMEOUT_SECONDS, context=self._context()
            ) as response:
                return _Answer(response.status, response.read(MAX_EKLF_BYTES + 1))
        except urllib.error.HTTPError as error:
            with error:
                return _Answer(error.code, error.read(MAX_EKLF_BYTES + 1))

    def post(self, der: bytes) -> _Answer:
        url = self.url.rstrip("/") + ONLINE_PATH
        return self._send(
            urllib.request.Request(
                url, data=der, method="POST", headers={"Content-Type": MEDIA_TYPE}
            )
        )

    def fetch(self, der: bytes, sequence: int) -> _Answer:
        url = f"{self.url.rstrip('/')}{ONLINE_PATH}/issues/{sequence}"
        authorization = "VKLOADREQ " + base64.b64encode(der).decode()
        return self._send(urllib.request.Request(url, headers={"Authorization": authorization}))


def _refusal(answer: _Answer) -> KmcRefused:
    try:
        data = json.loads(answer.body)
        return KmcRefused(str(data["error"]), f"the KMC refused: {data['message']}")
    except (ValueError, KeyError, TypeError):
        return KmcRefused("kmc_error", f"the KMC answered HTTP {answer.status}")


def _replayed_sequence(answer: _Answer) -> int | None:
    """The sequence of the EKLF that answered this request before, if the KMC says so."""
    if answer.status != 409:
        return None
    try:
        data = json.loads(answer.body)
    except ValueError:
        return None
    sequence = data.get("sequence") if isinstance(data, dict) else None
    return sequence if data.get("error") == "replayed_nonce" and type(sequence) is int else None


def _eklf(answer: _Answer) -> bytes:
    if answer.status != 200:
        raise _refusal(answer)
    if len(answer.body) > MAX_EKLF_BYTES:
        raise KmcRefused("eklf_too_large", f"the KMC's answer is over {MAX_EKLF_BYTES} bytes")
    return answer.body


def _unreachable(error: Exception) -> KmcRefused:
    return KmcRefused("kmc_unreachable", f"the KMC could not be reached: {error}")


def _recover(kmc: Kmc, der: bytes) -> bytes:
    """The EKLF answering `der` after its answer was lost: the same request again, then (the KMC
    having answered it before) the same EKLF fetched by its sequence."""
    try:
        again = kmc.post(der)
        sequence = _replayed_sequence(again)
        if sequence is None:
            return _eklf(again)
        return _eklf(kmc.fetch(der, sequence))
    except (OSError, http.client.HTTPException) as error:
        raise _unreachable(error) from None


def load_online(sm: SecurityModule, kmc: Kmc, keys: tuple[KeyIdentity, ...] | None) -> Loaded:
    """Request `keys` (None: every key authorised for this SM) from the KMC, receive and load the
    EKLF (all or nothing, as `SecurityModule.load`)."""
    der = sm.request(keys)
    try:
        eklf = _eklf(kmc.post(der))
    except (OSError, http.client.HTTPException):
        eklf = _recover(kmc, der)
    return sm.load(eklf)
