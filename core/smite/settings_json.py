"""Typed JSON -> frozen-dataclass field values, shared by every settings object.

One place for the rules, so `Settings` and `DiffusionSettings` accept and refuse the same things:
unknown keys are errors, booleans are never numbers, an integer setting takes only integral values,
a tuple setting (a JSON list) holds numbers of its default's kind.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from .errors import BadInputError


def fields_from_dict(cls: type, data: Mapping[str, Any], label: str = "setting",
                     skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validated constructor arguments of dataclass `cls` from `data` (a `version` key is ignored).

    `skip` names fields the caller converts itself (nested settings objects).
    """
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "version" or key in skip:
            continue
        if key not in known:
            raise BadInputError(f"unknown {label} '{key}'")
        default = known[key].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise BadInputError(f"{label} '{key}' must be true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise BadInputError(f"{label} '{key}' must be a number, got {value!r}")
            if isinstance(default, int) and not float(value).is_integer():
                raise BadInputError(f"{label} '{key}' must be an integer, got {value!r}")
            value = type(default)(value)
        elif isinstance(default, str) and not isinstance(value, str):
            raise BadInputError(f"{label} '{key}' must be a string, got {value!r}")
        elif isinstance(default, tuple):  # tuples of numbers (JSON lists), e.g. a per-step schedule
            if not isinstance(value, (list, tuple)) or any(
                    isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
                raise BadInputError(f"{label} '{key}' must be a list of numbers, got {value!r}")
            kind = int if default and all(isinstance(d, int) for d in default) else float
            if kind is int and not all(float(v).is_integer() for v in value):
                raise BadInputError(f"{label} '{key}' must be a list of integers, got {value!r}")
            value = tuple(kind(v) for v in value)
        values[key] = value
    return values
