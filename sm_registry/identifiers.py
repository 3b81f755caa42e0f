"""The registry's domain values: ID_man, SMID, SM kind and certification reference.

Each is validated once in its constructor (see docs/registry.md, "Formats"); code that holds one
trusts it. Refusals are `kmc.errors.InvalidInput` with a stable reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kmc.errors import InvalidInput

_ID_MAN = re.compile(r"[0-9A-F]{4}")
# 1-16 decimal digits, no leading zero: one SMID has exactly one spelling.
_SMID = re.compile(r"[1-9][0-9]{0,15}")
KINDS = ("certified", "virtual")
# Field name in the REF syntax → (attribute, column width).
_REF_FIELDS = {
    "model": ("model", 120),
    "firmware": ("firmware", 120),
    "version": ("version", 60),
    "number": ("number", 120),
}
_REF_VALUE = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True)
class IdMan:
    """A manufacturer identifier: 4 hexadecimal digits, held upper case."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _ID_MAN.fullmatch(self.value):
            raise InvalidInput(
                "bad_id_man", f"ID_man must be 4 hexadecimal digits, got {self.value!r:.40}"
            )

    @classmethod
    def parse(cls, text: str) -> IdMan:
        return cls(text.strip().upper())

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Smid:
    """A Security Module identifier: 1 to 16 decimal digits without a leading zero."""

    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str) or not _SMID.fullmatch(self.value):
            raise InvalidInput(
                "bad_smid",
                f"SMID must be 1-16 decimal digits without a leading zero, got {self.value!r:.40}",
            )

    def __str__(self) -> str:
        return self.value


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
