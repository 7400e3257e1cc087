"""The validation primitives every schema of the project is written with (params, suites, tasks, cards).

A leaf (it imports only `errors` and `vocab`), so params.yaml, a task file and a model card are
checked with the same rules and the same one-line errors: `<where>: <what is wrong>`, where
`where` is the file and the key path (`params.yaml: attack.eps`, `tasks/x.yaml: expected.margin`)
and the message says what is valid.

- `number`: the one check of a number (a finite real, never a bool; optionally an integer, in a
  range); `is_number` is its predicate, for callers that check a composite value (a list of them).
- `mapping` and `known_keys`: a mapping, and its keys among the known ones (closest matches named).
- `one_name` and `names`: a name, or a list of names, from a vocabulary.
- `typed`: a scalar of a Python type (str, list, …; numbers go to `number`).

Declarative kinds (`Number`, `Text`, `String`, `Pattern`, `Choice`, `ListOf`, `Record` of
`Field`s) wrap these checks with the JSON Schema (draft 2020-12) of what they accept, so a
schema declared once with them gives both the validator and the JSON Schema (`cards.py`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import NFBenchError, one_of

__all__ = ["is_number", "describe_number", "number", "typed", "sub", "mapping", "known_keys", "one_name",
           "names", "Number", "Text", "String", "Pattern", "Choice", "ListOf", "Field", "Record"]


def is_number(value: Any, low: float = -math.inf, high: float = math.inf, *, integer: bool = False,
              open_low: bool = False, open_high: bool = False, finite: bool = True) -> bool:
    """Whether `value` is a real number (an int when `integer`; never a bool) in the range.

    The range is [low, high], open at either end with open_low / open_high; NaN is never in it;
    ±inf only when not `finite` (and the range admits it).
    """
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        return False
    if finite and not math.isfinite(value):
        return False
    above = low < value if open_low else low <= value
    below = value < high if open_high else value <= high
    return above and below


def describe_number(low: float = -math.inf, high: float = math.inf, *, integer: bool = False,
                    open_low: bool = False, open_high: bool = False) -> str:
    """What `is_number` accepts, in words: "a positive integer", "a number in [0, 1)", "a number ≥ 0"."""
    noun = "integer" if integer else "number"
    article = "an" if integer else "a"
    if low > -math.inf and high < math.inf:
        return f"{article} {noun} in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if low > -math.inf:
        if (low == 0 and open_low) or (integer and low == 1 and not open_low):
            return f"a positive {noun}"
        return f"{article} {noun} {'>' if open_low else '≥'} {low:g}"
    if high < math.inf:
        return f"{article} {noun} {'<' if open_high else '≤'} {high:g}"
    return f"{article} {noun}"


def number(value: Any, where: str, low: float = -math.inf, high: float = math.inf, *, integer: bool = False,
           open_low: bool = False, open_high: bool = False, valid: str | None = None,
           verb: str = "must be") -> float | int:
    """`value` checked by `is_number` (finite), as a float (an int when `integer`).

    The error is `<where>: must be <valid>, got <value>`; `valid` defaults to `describe_number`'s
    words (a caller may say more: units, what null means), `verb` to "must be".
    """
    bounds = {"integer": integer, "open_low": open_low, "open_high": open_high}
    if not is_number(value, low, high, **bounds):
        raise NFBenchError(f"{where}: {verb} {valid or describe_number(low, high, **bounds)}, got {value!r}")
    return int(value) if integer else float(value)


_TYPE_NAMES = {str: "a string", list: "a list", dict: "a mapping", bool: "true or false"}


def typed(value: Any, kind: type, where: str, allow_none: bool = False) -> Any:
    """`value` of Python type `kind` (object: anything; int and float: `number`), or None if allowed."""
    if (value is None and allow_none) or kind is object:
        return value
    if kind in (int, float):
        number(value, where, integer=kind is int)
    elif not isinstance(value, kind):
        raise NFBenchError(f"{where}: must be {_TYPE_NAMES.get(kind, 'a ' + kind.__name__)}, got {value!r}")
    return value


def sub(where: str, key: str) -> str:
    """The key path of `key` below `where`: "file: key" below "file", "file: a.key" below "file: a"."""
    return f"{where}.{key}" if ": " in where else f"{where}: {key}"


def mapping(value: Any, where: str, valid: str) -> dict:
    """`value` as a dict; otherwise `<where>: must be <valid>, got <value>`."""
    if not isinstance(value, Mapping):
        raise NFBenchError(f"{where}: must be {valid}, got {value!r}")
    return dict(value)


def known_keys(raw: Mapping, valid: Iterable[str], where: str, what: str = "key", *, at_key: bool = False) -> None:
    """Every key of `raw` is one of `valid`; the error names the closest ones.

    It is reported at the mapping (`<where>: unknown key 'x'; …`) or, with `at_key`, at the key's
    own path (`<where>.x: unknown key 'x'; …`, see `sub`).
    """
    valid = list(valid)
    for key in raw:
        if key not in valid:
            raise NFBenchError(f"{sub(where, str(key)) if at_key else where}: {one_of(str(key), valid, what)}")


def one_name(value: Any, valid: Iterable[str], where: str, what: str = "name") -> Any:
    """`value`, one of the names `valid`; otherwise `<where>: unknown <what> 'x'; did you mean …`."""
    valid = list(valid)
    if value not in valid:
        raise NFBenchError(f"{where}: {one_of(str(value), valid, what)}")
    return value


def names(value: Any, valid: Iterable[str], noun: str, where: str, kind: str | None = None) -> list:
    """One name or a non-empty list of names, each one of `valid` (`kind` names them in the error)."""
    valid = list(valid)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise NFBenchError(f"{where}: must name at least one {noun} ({', '.join(valid)})")
    for item in items:
        one_name(item, valid, where, kind or noun)
    return list(items)


# ---------------------------------------------------------------------------------------------
# Declarative kinds: check(value, where) -> the value checked; json() -> its JSON Schema


@dataclass(frozen=True)
class Number:
    """A number as `number` checks it."""

    low: float = -math.inf
    high: float = math.inf
    integer: bool = False
    open_low: bool = False
    open_high: bool = False

    def _bounds(self) -> dict:
        return {"integer": self.integer, "open_low": self.open_low, "open_high": self.open_high}

    def check(self, value: Any, where: str) -> float | int:
        return number(value, where, self.low, self.high, **self._bounds())

    def json(self) -> dict:
        out: dict[str, Any] = {"type": "integer" if self.integer else "number"}
        if self.low > -math.inf:
            out["exclusiveMinimum" if self.open_low else "minimum"] = self.low
        if self.high < math.inf:
            out["exclusiveMaximum" if self.open_high else "maximum"] = self.high
        return out


@dataclass(frozen=True)
class Text:
    """A string with something besides white space."""

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise NFBenchError(f"{where}: must be a non-empty string, got {value!r}")
        return value

    def json(self) -> dict:
        return {"type": "string", "pattern": r"\S"}


@dataclass(frozen=True)
class String:
    """Any string (free text)."""

    def check(self, value: Any, where: str) -> str:
        return typed(value, str, where)

    def json(self) -> dict:
        return {"type": "string"}


@dataclass(frozen=True)
class Pattern:
    """A string matching `regex` (anchored with ^…$); `valid` says what that means."""

    regex: str
    valid: str

    def check(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not re.match(self.regex, value):
            raise NFBenchError(f"{where}: must be {self.valid}, got {value!r}")
        return value

    def json(self) -> dict:
        return {"type": "string", "pattern": self.regex}


@dataclass(frozen=True)
class Choice:
    """One of the names `values` (`what` names them in the error)."""

    values: tuple
    what: str = "name"

    def check(self, value: Any, where: str) -> Any:
        return one_name(value, self.values, where, self.what)

    def json(self) -> dict:
        return {"enum": list(self.values)}


@dataclass(frozen=True)
class ListOf:
    """A list (of at least `min_items`) of `item`s; `valid` words the list.

    An item's own error names it at the list's path, or, with `whole`, the list is refused as one.
    """

    item: Any
    valid: str
    min_items: int = 0
    whole: bool = False

    def check(self, value: Any, where: str) -> list:
        refused = NFBenchError(f"{where}: must be {self.valid}, got {value!r}")
        if not isinstance(value, list) or len(value) < self.min_items:
            raise refused
        try:
            return [self.item.check(v, where) for v in value]
        except NFBenchError:
            if self.whole:
                raise refused from None
            raise

    def json(self) -> dict:
        return {"type": "array", "items": self.item.json(), **({"minItems": self.min_items} if self.min_items else {})}


@dataclass(frozen=True)
class Field:
    """One key of a `Record`: its kind, whether it is required, what it is (the schema's description)."""

    kind: Any
    required: bool = False
    doc: str = ""

    def json(self) -> dict:
        return {**({"description": self.doc} if self.doc else {}), **self.kind.json()}


@dataclass(frozen=True)
class Record:
    """A mapping of known keys (`what` names them in the error), each checked by its `Field`'s kind.

    valid words the mapping for the error when the value is none; `extra` is JSON Schema added to
    the record's (rules across its fields, which the owner of the record checks in code).
    """

    fields: dict
    valid: str
    what: str = "field"
    extra: dict = field(default_factory=dict)

    @property
    def required(self) -> list[str]:
        return [key for key, f in self.fields.items() if f.required]

    def check_keys(self, value: Any, where: str) -> dict:
        """The mapping with only known keys and every required one; its values not yet checked."""
        value = mapping(value, where, self.valid)
        known_keys(value, self.fields, where, self.what)
        for key in self.required:
            if key not in value:
                raise NFBenchError(f"{sub(where, key)}: missing (required: {', '.join(self.required)})")
        return value

    def check(self, value: Any, where: str) -> dict:
        value = self.check_keys(value, where)
        return {key: self.fields[key].kind.check(v, sub(where, key)) for key, v in value.items()}

    def json(self) -> dict:
        return {"type": "object", "properties": {key: f.json() for key, f in self.fields.items()},
                **({"required": self.required} if self.required else {}), "additionalProperties": False,
                **self.extra}
