"""Test data files, read into rows: CSV with a header row, or JSON lines (an object a
line, each with the same keys; a value that is not a string as compact JSON).

The driver reads a file given by path and the rows travel in the plan; a file given
by a filesystem URI (``s3://``, ``gs://``, ``file://`` on a shared volume) is read by
the driver to check it and count its rows, and again by each generator
(``workers.journey.TestData.loaded``), so it need not fit in the plan.
"""

from __future__ import annotations

import csv
import io
import json

from blastradius.targets.validation import FieldError
from blastradius.workers import layout

Rows = tuple[tuple[str, ...], ...]


def read_uri(uri: str) -> bytes:
    """The bytes of the file at ``uri``; ``FieldError`` (at ``file``) when it cannot be
    read."""
    try:
        filesystem, path = layout.resolve(uri)
        with filesystem.open_input_stream(path) as stream:
            return stream.read()
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise FieldError("file", f"cannot read {uri!r}: {first}") from None


def read_rows(name: str, content: bytes) -> tuple[tuple[str, ...], Rows]:
    """The columns and rows of the file ``name`` (its suffix says its format) holding
    ``content``; ``FieldError`` at ``file`` says what is wrong with it."""
    try:
        document = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise FieldError("file", "not UTF-8 text") from None
    suffix = name.rsplit(".", 1)[-1].lower()
    if suffix == "csv":
        return _csv(document)
    if suffix in ("jsonl", "ndjson"):
        return _json_lines(document)
    raise FieldError("file", f"{name!r}: give a .csv or a .jsonl file")


def _csv(document: str) -> tuple[tuple[str, ...], Rows]:
    lines = [row for row in csv.reader(io.StringIO(document, newline="")) if row]
    if not lines:
        raise FieldError("file", "empty: a CSV file needs a header row and a row of data")
    header, *rows = lines
    return tuple(column.strip() for column in header), tuple(map(tuple, rows))


def _json_lines(document: str) -> tuple[tuple[str, ...], Rows]:
    columns: tuple[str, ...] = ()
    rows: list[tuple[str, ...]] = []
    for number, line in enumerate(document.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise FieldError("file", f"line {number} is not JSON") from None
        if not isinstance(item, dict):
            kind = type(item).__name__
            raise FieldError("file", f"line {number}: expected an object, got {kind}")
        if not rows:
            columns = tuple(item)
        elif tuple(item) != columns:
            raise FieldError("file", f"line {number} has keys {list(item)}, not {list(columns)}")
        rows.append(tuple(as_text(v) for v in item.values()))
    return columns, tuple(rows)


def as_text(value: object) -> str:
    """A JSON value as it goes into a request: a string as is, anything else as compact
    JSON (``true``, ``42``, ``{"a":1}``): a JSON lines row's value, or a captured one."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
