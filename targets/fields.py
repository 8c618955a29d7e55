"""Reading a validated document: every key known, every value checked, errors one line.

``Fields`` wraps a mapping and records which keys were read, so whatever is
left is an unknown key, reported with its path. The readers raise
``FieldError`` with the field's path. ``load_document`` reads one from a YAML or
JSON file (or stdin): a scenario's blocks and a service's ``--config`` alike.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from blastradius.targets.spec import parse_duration_ns
from blastradius.targets.validation import FieldError

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")
T = TypeVar("T")


class Fields:
    """A mapping being validated: every key read is recorded, so the keys left over are
    the unknown ones (``done``)."""

    def __init__(self, value: object, path: str, document: str = "scenario") -> None:
        if not isinstance(value, Mapping):
            raise FieldError(path or document, f"expected a mapping, got {kind_of(value)}")
        self.value, self.path = value, path
        self.read: list[str] = []  # the keys asked for, in order: the ones known here

    def at(self, key: str) -> str:
        """The path of ``key`` in this mapping, for messages (a key that is not a plain
        word is quoted, so a message stays one line whatever the document holds)."""
        key = key if _PLAIN_KEY.fullmatch(key) else repr(key)
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``; ``key`` is known here from now on."""
        if key not in self.read:
            self.read.append(key)
        return self.value.get(key, default)

    def parsed(self, key: str, parse: Callable[[str], T]) -> T | None:
        """The text of ``key`` read by ``parse`` (a spec, say), or None when it is absent;
        the ``ValueError`` that ``parse`` raises becomes a ``FieldError`` at ``key``."""
        value = self.get(key)
        if value is None:
            return None
        try:
            return parse(str(value))
        except ValueError as exc:
            raise FieldError(self.at(key), str(exc)) from None

    def done(self) -> None:
        """``FieldError`` naming the first key that no one asked for."""
        unknown = [k for k in self.value if k not in self.read]
        if unknown:
            known = ", ".join(self.read)
            raise FieldError(self.at(str(unknown[0])), f"unknown key (known here: {known})")


def each(items: Iterable[Any], path: str, parse: Callable[[Any], T]) -> list[T]:
    """Every item of the list at ``path`` read by ``parse``; a ``ValueError`` it raises
    becomes a ``FieldError`` at the item (``path[i]``)."""
    parsed = []
    for i, item in enumerate(items):
        try:
            parsed.append(parse(item))
        except ValueError as exc:
            raise FieldError(f"{path}[{i}]", str(exc)) from None
    return parsed


def kind_of(value: object) -> str:
    """What a value is, in a message: ``nothing`` for None, else its type's name."""
    return "nothing" if value is None else type(value).__name__


def number(value: object, path: str, minimum: float = 0, strict: bool = True) -> float:
    """A number above ``minimum`` (or at it when not ``strict``)."""
    return float(_checked_number(value, path, minimum, strict, integer=False))


def whole(value: object, path: str, minimum: float = 0, strict: bool = True) -> int:
    """A whole number above ``minimum`` (or at it when not ``strict``)."""
    return int(_checked_number(value, path, minimum, strict, integer=True))


def _checked_number(
    value: object, path: str, minimum: float, strict: bool, integer: bool
) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldError(path, f"expected a number, got {kind_of(value)} {value!r}")
    if integer and not float(value).is_integer():
        raise FieldError(path, f"expected a whole number, got {value!r}")
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        sign = ">" if strict else ">="
        raise FieldError(path, f"must be {sign} {minimum:g} (got {value!r})")
    return value


def read_duration(value: object, path: str, positive: bool = True) -> int:
    """A duration (``30s``, ``500ms``; a bare number is seconds) in nanoseconds."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FieldError(path, f"expected a duration like 30s, got {kind_of(value)}")
    try:
        ns = parse_duration_ns(str(value), default_unit="s")
    except ValueError as exc:
        raise FieldError(path, str(exc)) from None
    if positive and ns == 0:
        raise FieldError(path, "must be positive")
    return ns


def text(value: object, path: str) -> str:
    """Text that is not blank."""
    if not isinstance(value, str) or not value.strip():
        raise FieldError(path, f"expected text, got {kind_of(value)} {value!r}")
    return value


def load_document(path: str, what: str) -> object:
    """The YAML or JSON document in the file at ``path`` (``-``: stdin; JSON when the name
    ends in ``.json``); ``ValueError`` naming ``what`` and the file when it cannot be read
    or parsed."""
    try:
        source = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"{what} {path!r}: {exc.strerror}") from None
    try:
        return json.loads(source) if path.endswith(".json") else yaml.safe_load(source)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{what} {path!r}: not valid: {str(exc).splitlines()[0]}") from None
