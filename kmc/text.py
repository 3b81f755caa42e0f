"""The text rules every front door applies to what it is given (pure: no Flask, no database).

    any text          no NUL or other C0/C1 control (tab, CR and LF allowed in free text only),
                      no lone surrogate (it cannot be stored or encoded)
    a name            also no invisible formatting character (bidi overrides and isolates,
                      zero-width joiners, ...: Unicode category Cf) and no line/paragraph separator,
                      so what a page shows is what was typed
    a path or query   one line: no control character at all

`problem(value, ...)` says what is wrong (or None); `check` raises `TextRefused` with the stable
reason `invalid_text`. The API's fields (kmc.api.schema), the page forms' validator
(kmc.web_forms), the edge guard on every request (kmc.web), the command line's options
(kmc.command_line.TextParam) and bulk uploads' file names (sm_registry.bulk) all call these.
"""

from __future__ import annotations

import unicodedata

REASON = "invalid_text"
_LINE_BREAKS = frozenset("\t\n\r")


class TextRefused(ValueError):
    reason = REASON


def problem(value: str, *, name: bool = False, one_line: bool = False) -> str | None:
    """Why `value` is refused, or None when it is acceptable text."""
    for char in value:
        code = ord(char)
        if 0xD800 <= code <= 0xDFFF:
            return "contains a lone surrogate (not Unicode text)"
        if code < 0x20 or 0x7F <= code < 0xA0:
            if one_line or name or char not in _LINE_BREAKS:
                return f"contains the control character U+{code:04X}"
        elif name and unicodedata.category(char) in ("Cf", "Zl", "Zp"):
            return f"contains the invisible formatting character U+{code:04X}"
    return None


def check(value: str, what: str, *, name: bool = False, one_line: bool = False) -> str:
    """`value` unchanged, or `TextRefused` naming `what`."""
    found = problem(value, name=name, one_line=one_line)
    if found is not None:
        raise TextRefused(f"{what} {found}")
    return value
