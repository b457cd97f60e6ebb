"""Typed JSON -> frozen-dataclass field values, shared by every settings object.

One place for the rules, so `Settings` and `DiffusionSettings` accept and refuse the same things:
unknown keys are errors, booleans are never numbers, an integer setting takes only integral values,
a tuple setting (a JSON list) holds numbers of its default's kind. Each field declares its valid range
beside its definition (`ranged`), checked by `check_ranges`.
"""

from __future__ import annotations

import dataclasses
import math
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
            if isinstance(default, int) and isinstance(value, float) and not value.is_integer():
                raise BadInputError(f"{label} '{key}' must be an integer, got {value!r}")
            try:
                value = type(default)(value)
            except OverflowError:  # a 400-digit integer has no float
                raise BadInputError(f"{label} '{key}' is out of range, got a {len(str(value))}-digit number") from None
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


# --- valid ranges, declared beside each field ------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Range:
    """The valid values of one setting: numeric bounds (open or closed), odd-only or multiples, or choices."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    odd: bool = False
    choices: tuple[str, ...] = ()
    multiple: int = 0  # > 0: the value must be a multiple of it (e.g. a model resolution of 32)

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        left = "(" if self.lo_open else "["
        right = ")" if self.hi_open else "]"
        bounds = f"{left}{_num(self.lo, '-inf')}, {_num(self.hi, 'inf')}{right}"
        kind = "an odd number in " if self.odd else f"a multiple of {self.multiple} in " if self.multiple else "in "
        return kind + bounds

    def admits(self, value: Any) -> bool:
        if isinstance(value, tuple):  # a per-step schedule: one or more values, each in range
            return bool(value) and all(self.admits(v) for v in value)
        if self.choices:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):  # (an int is finite; isfinite overflows on 10**400)
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi):
            return False
        if self.multiple and value % self.multiple != 0:
            return False
        return not self.odd or int(value) % 2 == 1


def _num(value: float | None, missing: str) -> str:
    return missing if value is None else f"{value:g}"


def ranged(default: Any, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, odd: bool = False, choices: tuple[str, ...] = (), multiple: int = 0) -> Any:
    """A dataclass field with ``default`` whose valid range is stored in its metadata (see `check_ranges`).

    Usage, beside the definition: ``refine_eps: float = ranged(5e-4, 0, 1, lo_open=True)  # why``.
    """
    rng = Range(None if lo is None else float(lo), None if hi is None else float(hi), lo_open, hi_open, odd,
                tuple(choices), int(multiple))
    if not rng.admits(default):
        raise ValueError(f"default {default!r} is outside its own range {rng.describe()}")
    return dataclasses.field(default=default, metadata={"range": rng})


def check_ranges(obj: Any, label: str = "setting") -> None:
    """BadInputError naming the first field of dataclass ``obj`` outside its declared range.

    Called from ``__post_init__``, so a value is checked however the object was made (JSON, --set,
    ``replace``). Any float field, ranged or not, must be finite: NaN or Infinity is never a setting.
    """
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        rng = f.metadata.get("range")
        if isinstance(value, float) and not math.isfinite(value) and rng is None:
            raise BadInputError(f"{label} '{f.name}' must be a finite number, got {value!r}")
        if rng is not None and not rng.admits(value):
            what = f"one or more numbers each {rng.describe()}" if isinstance(value, tuple) else rng.describe()
            raise BadInputError(f"{label} '{f.name}' must be {what}, got {value!r}")


def field_ranges(cls: type) -> dict[str, Range]:
    """``{field name: Range}`` of every ranged field of ``cls`` (for hosts' UIs and tests)."""
    return {f.name: f.metadata["range"] for f in dataclasses.fields(cls) if "range" in f.metadata}
