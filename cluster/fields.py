"""Reading a validated document: every key known, every value checked, errors one line.

``Fields`` wraps a mapping and records which keys were read, so whatever is
left is an unknown key, reported with its path. The readers raise
``ValueError`` with a message that begins with the field's path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from blastradius.targets.spec import parse_duration_ns
from blastradius.targets.validation import FieldError

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Fields:
    """A mapping being validated: every key read is recorded, so the keys left over are
    the unknown ones (``done``)."""

    def __init__(self, value: object, path: str) -> None:
        if not isinstance(value, Mapping):
            raise FieldError(path or "scenario", f"expected a mapping, got {kind_of(value)}")
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

    def done(self) -> None:
        """``FieldError`` naming the first key that no one asked for."""
        unknown = [k for k in self.value if k not in self.read]
        if unknown:
            known = ", ".join(self.read)
            raise FieldError(self.at(str(unknown[0])), f"unknown key (known here: {known})")


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
