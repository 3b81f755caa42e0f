"""The page forms' share of the text rules (kmc.text): one WTForms validator, so a form refuses
what the API's `Text` fields refuse, with the same words."""

from __future__ import annotations

from typing import Any

from wtforms.validators import ValidationError

from kmc import text


class ValidText:
    """`ValidText()` for free text, `ValidText(name=True)` for a name shown on pages."""

    def __init__(self, *, name: bool = False) -> None:
        self.name = name

    def __call__(self, form: Any, field: Any) -> None:
        if isinstance(field.data, str):
            found = text.problem(field.data, name=self.name)
            if found is not None:
                raise ValidationError(found)
