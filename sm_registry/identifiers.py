"""The registry's own domain values: SM kind and certification reference.

Each is validated once in its constructor (see docs/registry.md, "Formats"); code that holds one
trusts it. Refusals are `kmc.errors.InvalidInput` with a stable reason. The SMID and ID_man are
shared with the protocol and the SM: `key_load_protocol.identifiers.Smid` and `IdMan`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kmc.errors import InvalidInput

KINDS = ("certified", "virtual")
# Field name in the REF syntax → (attribute, column width).
_REF_FIELDS = {
    "model": ("model", 120),
    "firmware": ("firmware", 120),
    "version": ("version", 60),
    "number": ("number", 120),
}
_REF_VALUE = re.compile(r"[\x20-\x7e]+")


def parse_kind(text: str) -> str:
    if text not in KINDS:
        raise InvalidInput("bad_kind", f"SM kind must be one of {', '.join(KINDS)}")
    return text


@dataclass(frozen=True)
class CertificationReference:
    """Which certified product an SM is: model, firmware identifier and version, certificate number.

    Text form (CLI, forms): `model=M,firmware=F,version=V,number=N`, all four fields, each value
    printable ASCII without ',' or '=' (see docs/registry.md).
    """

    model: str
    firmware: str
    version: str
    number: str

    def __post_init__(self) -> None:
        for field, (attribute, width) in _REF_FIELDS.items():
            value = getattr(self, attribute)
            if (
                not isinstance(value, str)
                or not _REF_VALUE.fullmatch(value)
                or value != value.strip()
                or "," in value
                or "=" in value
                or len(value) > width
            ):
                raise InvalidInput(
                    "bad_certification",
                    f"certification {field} must be 1-{width} printable ASCII characters "
                    "without ',' or '=' or surrounding spaces",
                )

    @classmethod
    def parse(cls, text: str) -> CertificationReference:
        values: dict[str, str] = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in _REF_FIELDS:
                raise InvalidInput(
                    "bad_certification",
                    "certification reference syntax is model=...,firmware=...,version=...,number=...",
                )
            if name in values:
                raise InvalidInput("bad_certification", f"certification field {name} given twice")
            values[name] = value.strip()
        missing = [name for name in _REF_FIELDS if name not in values]
        if missing:
            raise InvalidInput(
                "bad_certification", f"certification reference lacks {', '.join(missing)}"
            )
        return cls(**{_REF_FIELDS[name][0]: values[name] for name in _REF_FIELDS})

    def __str__(self) -> str:
        return (
            f"model={self.model},firmware={self.firmware},"
            f"version={self.version},number={self.number}"
        )
