"""A session's steps, pure: the session's values in a step's request, what a step
captures from its response, and what it expects of it.

A session target (issue 23) sends a journey of steps, each a request whose URL,
headers and body may name the session's values as ``${name}``: a value captured
from an earlier step's response, or ``${row.COLUMN}`` of the session's test-data
row. Any other ``${NAME}`` is the environment's and is resolved when the scenario
is loaded, as in any request; ``$$`` is a literal ``$``. ``compile_text`` splits a
text into literal parts and slots once, and ``Text.render`` fills the slots for one
session, so a step's request costs a join, not a parse.

A ``Step`` is one request of a journey, with the think time before it, what it
captures and what it expects; ``Step.request`` gives its bytes for one session's
values: prepared once when it holds none, and otherwise joined from its bytes
around the values (found once, ``_Slots``), escaped as a full preparation would. A
``Journey`` is the steps in order and the time a whole session may take.

A ``Capture`` takes one value from a ``Response``: by a JSON path (the small subset
``$``, ``.key``, ``[N]``, ``[-N]``, ``['key']``), a regular expression on the body
(its first group, or the whole match), or a header. An ``Expect`` holds what the
response must satisfy: a status in a set of ranges, a header's value, a JSON value,
text in the body. ``Expect.failure`` and ``Capture.take`` say in one line what was
not so; the generator records that row as a ``check`` failure and ends the session.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

from blastradius.targets.spec import Latency
from blastradius.targets.validation import FieldError
from blastradius.workers.client import PATH_SAFE, QUERY_SAFE, PreparedRequest
from blastradius.workers.datafile import as_text, read_rows, read_uri
from blastradius.workers.template import METHODS, check_header, draw

if TYPE_CHECKING:
    from blastradius.workers.flows import Flow

MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
_UNPARSED: Any = object()
ROW = "row."  # the prefix of a test-data column's name in a text

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SLOT = re.compile(rf"\$\{{({_NAME}(?:\.{_NAME})?)\}}|\$\$")
_CAPTURE_NAME = re.compile(rf"^{_NAME}$")
_PATH_PART = re.compile(
    r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(-?\d+)\]|\['((?:[^'\\]|\\.)*)'\]|\[\"((?:[^\"\\]|\\.)*)\"\]"
)
_SOURCES = ("json", "regex", "header")


@dataclass(frozen=True, slots=True)
class Text:
    """Text with session values in it: ``parts[0]``, then each slot's value followed by
    the next part. A text with no slot renders as itself."""

    parts: tuple[str, ...]
    names: tuple[str, ...] = ()
    written: str = field(default="", compare=False)  # as the scenario has it (no env value)

    def __post_init__(self) -> None:
        if len(self.parts) != len(self.names) + 1:
            raise ValueError("a text has one more part than it has slots")

    def render(self, values: Mapping[str, str]) -> str:
        """The text with each slot's value from ``values`` (every name must be there)."""
        if not self.names:
            return self.parts[0]
        pieces = [self.parts[0]]
        for name, part in zip(self.names, self.parts[1:], strict=True):
            pieces.append(values[name])
            pieces.append(part)
        return "".join(pieces)


def compile_text(
    text: str, session: Collection[str], env: Mapping[str, str], path: str = ""
) -> Text:
    """``text`` split at its session values' slots, the environment's names resolved.

    ``session`` holds the names a step may use: captured by earlier steps, and
    ``row.COLUMN`` for each column of the test data (when there is any). A ``FieldError``
    at ``path`` names a row column the data lacks, or a name that is neither the
    session's nor set in the environment.
    """
    parts: list[str] = []
    names: list[str] = []
    literal: list[str] = []
    position = 0
    for match in _SLOT.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        name = match.group(1)
        if name is None:
            literal.append("$")
        elif name in session:
            parts.append("".join(literal))
            names.append(name)
            literal = []
        elif name.startswith(ROW):
            if not any(known.startswith(ROW) for known in session):
                raise FieldError(path, f"${{{name}}}: this target has no test data (data:)")
            raise FieldError(path, f"${{{name}}}: the test data has no column {name[len(ROW) :]!r}")
        elif "." not in name and name in env:
            literal.append(env[name])
        else:
            problem = "is neither captured by an earlier step nor set in the environment"
            raise FieldError(path, f"${{{name}}} {problem}")
    literal.append(text[position:])
    parts.append("".join(literal))
    return Text(tuple(parts), tuple(names), text)


def parse_json_path(text: str) -> tuple[str | int, ...]:
    """The keys and indexes of a JSON path (``$.items[0].id``); ``ValueError`` otherwise."""
    if not text.startswith("$"):
        raise ValueError(f"{text!r}: a JSON path begins with $")
    steps: list[str | int] = []
    position = 1
    while position < len(text):
        match = _PATH_PART.match(text, position)
        if match is None:
            raise ValueError(
                f"{text!r}: cannot read {text[position:]!r} (a path takes .key, [N] and ['key'])"
            )
        key, index, single, double = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            quoted = single if single is not None else double
            steps.append(key if quoted is None else re.sub(r"\\(.)", r"\1", quoted))
        position = match.end()
    return tuple(steps)


def find_json(document: object, path: tuple[str | int, ...]) -> object:
    """The value at ``path`` in a parsed JSON document, or ``MISSING``."""
    value = document
    for step in path:
        if isinstance(step, int):
            if not isinstance(value, list) or not -len(value) <= step < len(value):
                return MISSING
            value = value[step]
        else:
            if not isinstance(value, dict) or step not in value:
                return MISSING
            value = value[step]
    return value


class Response:
    """A complete response as a step sees it: status, headers as received, body.

    The body is parsed as JSON at most once, when a capture or an expectation first
    asks for it."""

    __slots__ = ("_json", "body", "headers", "status")

    def __init__(self, status: int, headers: tuple[tuple[bytes, bytes], ...], body: bytes):
        self.status, self.headers, self.body = status, headers, body
        self._json: object = _UNPARSED

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or None."""
        wanted = name.lower().encode("latin-1")
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1").strip()
        return None

    def json(self) -> object:
        """The body parsed as JSON, or ``MISSING`` when it is not JSON."""
        if self._json is _UNPARSED:
            try:
                self._json = json.loads(self.body)
            except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
                self._json = MISSING
        return self._json

    def text(self) -> str:
        """The body as text (UTF-8, undecodable bytes replaced)."""
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Capture:
    """One session value taken from a response: ``source`` is ``json`` (a JSON path),
    ``regex`` (on the body: its first group, or the whole match) or ``header``."""

    name: str
    source: str
    expression: str
    _path: tuple[str | int, ...] = field(init=False, repr=False, compare=False, default=())
    _regex: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if not _CAPTURE_NAME.match(self.name) or self.name == ROW.rstrip("."):
            raise FieldError(self.name, "a capture's name is a word (letters, digits, _)")
        if self.source not in _SOURCES:
            raise FieldError(self.name, f"capture from one of {', '.join(_SOURCES)}")
        if self.source == "json":
            try:
                object.__setattr__(self, "_path", parse_json_path(self.expression))
            except ValueError as exc:
                raise FieldError(f"{self.name}.json", str(exc)) from None
        elif self.source == "regex":
            try:
                object.__setattr__(self, "_regex", re.compile(self.expression))
            except re.error as exc:
                raise FieldError(f"{self.name}.regex", f"not a regular expression: {exc}") from None
        elif not self.expression:
            raise FieldError(f"{self.name}.header", "name the header")

    def take(self, response: Response) -> str | None:
        """The captured value as text, or None when the response does not hold it."""
        if self.source == "header":
            return response.header(self.expression)
        if self._regex is not None:
            match = self._regex.search(response.text())
            if match is None:
                return None
            return match.group(1) if self._regex.groups else match.group(0)
        value = find_json(response.json(), self._path)
        return None if value is MISSING else as_text(value)

    def missing(self) -> str:
        """One line saying what this capture did not find."""
        return f"capture {self.name}: no {self.source} {self.expression!r} in the response"


def parse_statuses(value: object, path: str = "status") -> tuple[tuple[int, int], ...]:
    """Status ranges from ``200``, ``"2xx"``, ``"200-299"`` or a list of these."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise FieldError(path, "give at least one status")
    ranges = []
    for item in items:
        spelled = str(item).strip().lower()
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise FieldError(path, f"{item!r} is not a status (200, 2xx or 200-299)")
        if re.fullmatch(r"[1-5]xx", spelled):
            low = int(spelled[0]) * 100
            ranges.append((low, low + 99))
            continue
        bounds = re.fullmatch(r"(\d{3})(?:\s*-\s*(\d{3}))?", spelled)
        if bounds is None:
            raise FieldError(path, f"{item!r} is not a status (200, 2xx or 200-299)")
        low, high = int(bounds.group(1)), int(bounds.group(2) or bounds.group(1))
        if not 100 <= low <= high <= 599:
            raise FieldError(path, f"{item!r}: statuses run from 100 to 599, low to high")
        ranges.append((low, high))
    return tuple(ranges)


@dataclass(frozen=True, slots=True)
class Expect:
    """What a step's response must be: a status in one of ``statuses`` (any 2xx when
    empty), each of ``headers`` (name, exact value), each JSON value of ``json`` (path,
    value, compared as parsed JSON), and each text of ``body`` in the body."""

    statuses: tuple[tuple[int, int], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    json: tuple[tuple[str, Any], ...] = ()
    body: tuple[str, ...] = ()
    _paths: tuple[tuple[str | int, ...], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        paths = []
        for path, _ in self.json:
            try:
                paths.append(parse_json_path(path))
            except ValueError as exc:
                raise FieldError(f"json.{path}", str(exc)) from None
        object.__setattr__(self, "_paths", tuple(paths))

    def status_ok(self, status: int) -> bool:
        """Whether ``status`` is one this step expects."""
        if not self.statuses:
            return 200 <= status <= 299
        return any(low <= status <= high for low, high in self.statuses)

    def failure(self, response: Response) -> str | None:
        """One line saying what the response is not, or None when it is all it should be."""
        if not self.status_ok(response.status):
            return f"expect status: got {response.status}"
        for name, wanted in self.headers:
            got = response.header(name)
            if got != wanted:
                return f"expect header {name}: got {got!r}, not {wanted!r}"
        for (spelled, wanted), path in zip(self.json, self._paths, strict=True):
            found = find_json(response.json(), path)
            if found is MISSING:
                return f"expect json {spelled}: not in the response"
            if not _same_json(found, wanted):
                return f"expect json {spelled}: got {as_text(found)}, not {as_text(wanted)}"
        if self.body:
            text = response.text()
            for wanted_text in self.body:
                if wanted_text not in text:
                    return f"expect body: no {wanted_text!r} in it"
        return None


def check_name(failure: str) -> str:
    """What a failed check is counted under: the check, not what the response held
    (``expect json $.user``, ``capture token``), but for a status, the status."""
    if failure.startswith("expect status"):
        return failure
    return failure.partition(": ")[0]


def _same_json(a: object, b: object) -> bool:
    # JSON has one number type: 1 and 1.0 are equal, but true is not 1, at any depth.
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_json, a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    return a == b


_PATH, _QUERY, _HEADER, _LENGTH = range(4)  # where a value goes in a request's head
_MARK = re.compile(rb"brslot(\d+)q")  # letters and digits: kept as they are by every step
_URL_UNSAFE = ("?", "#", "\t", "\r", "\n")  # in a path value: they would re-split the URL
_HEADER_UNSAFE = ("\r", "\n", "\0")


@dataclass(frozen=True, slots=True)
class _Slots:
    """A step's request head as bytes around its values, found once by preparing it
    with a mark for each value: a session's request is then a join, not a parse.
    ``render`` gives None when a value needs what only a full preparation does (a
    ``?`` or ``#`` in a path, an empty query value, a line break in a header), so
    the bytes are always those ``Step._prepare`` makes."""

    origin: tuple[str, str, int]
    parts: tuple[bytes, ...]
    names: tuple[str, ...]
    kinds: tuple[int, ...]
    head: bool
    keep: bool

    @staticmethod
    def find(step: Step) -> _Slots | None:
        """The slots of ``step``'s request, or None when a value is in its URL's scheme,
        host or port (or the request cannot be prepared with marks)."""
        texts = (step.url, step.body, *(text for _, text in step.headers))
        names = sorted({name for text in texts for name in text.names})
        marks = {name: f"brslot{i}q" for i, name in enumerate(names)}
        if step.method == "HEAD" or "brslot" in urlsplit(step.url.render(marks)).netloc:
            return None
        try:
            if b"brslot" in step._prepare(dict.fromkeys(names, "")).data:
                return None  # the step's own text has a mark's letters in it
            marked = step._prepare(marks)
        except ValueError:
            return None
        head = marked.data[: marked.data.index(b"\r\n\r\n") + 4]
        line_end = head.index(b"\r\n")
        query = head.find(b"?", 0, line_end)
        parts, slot_names, kinds, at = [], [], [], 0
        for match in _MARK.finditer(head):
            parts.append(head[at : match.start()])
            slot_names.append(names[int(match.group(1))])
            if match.start() > line_end:
                kinds.append(_HEADER)
            else:
                kinds.append(_PATH if query < 0 or match.start() < query else _QUERY)
            at = match.end()
        if step.body.names:
            length = re.search(rb"\r\nContent-Length: (\d+)\r\n", head[at:])
            if length is None:
                return None
            parts.append(head[at : at + length.start(1)])
            slot_names.append("")
            kinds.append(_LENGTH)
            at += length.end(1)
        parts.append(head[at:])
        return _Slots(
            marked.origin, tuple(parts), tuple(slot_names), tuple(kinds), marked.head, marked.keep
        )

    def render(self, values: Mapping[str, str], body: bytes) -> PreparedRequest | None:
        """The request with ``values`` in its head and ``body`` after it, or None."""
        pieces = [self.parts[0]]
        for name, kind, part in zip(self.names, self.kinds, self.parts[1:], strict=True):
            value = str(len(body)) if kind == _LENGTH else _escaped(kind, values[name])
            if value is None:
                return None
            try:
                pieces.append(value.encode("latin-1"))
            except UnicodeEncodeError:
                return None
            pieces.append(part)
        pieces.append(body)
        return PreparedRequest(self.origin, b"".join(pieces), self.head, self.keep)


def _escaped(kind: int, value: str) -> str | None:
    """A value as it goes in a request's head (kind: a path, a query, a header value),
    or None when it would change more than its own place there."""
    if kind == _HEADER:
        return None if any(c in value for c in _HEADER_UNSAFE) else value
    if any(c in value for c in _URL_UNSAFE[kind == _QUERY :]):
        return None
    if not value and kind == _QUERY:  # an empty query loses its "?"
        return None
    if value.isascii() and value.isalnum():  # (never quoted)
        return value
    return quote(value, safe=PATH_SAFE if kind == _PATH else QUERY_SAFE)


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a session: a request whose texts may hold the session's values, the
    think time before it (after the previous step ended), what it captures from its
    response and what it expects of it. A step with no session value in it is
    prepared once, here, so what cannot be sent is an error when it is built."""

    name: str
    url: Text
    method: str = "GET"
    headers: tuple[tuple[str, Text], ...] = ()
    body: Text = Text(("",))
    json_body: bool = False  # the body is JSON: values go in escaped as JSON string text
    raw_body: bytes | None = field(default=None, repr=False)  # a file's bytes, instead of body
    think: Latency | None = None  # None: at once
    captures: tuple[Capture, ...] = ()
    expect: Expect = Expect()
    repeat: tuple[int, int] = (1, 1)  # sent this many times in a row (drawn per session)
    _fixed: PreparedRequest | None = field(init=False, repr=False, compare=False, default=None)
    _slots: _Slots | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise FieldError("method", f"{self.method!r} is not one of {', '.join(METHODS)}")
        names = [c.name for c in self.captures]
        if len(set(names)) != len(names):
            raise FieldError("capture", "a name is captured twice")
        _check_times(self.repeat, "repeat")
        if not self.url.names and not self.body.names and not any(t.names for _, t in self.headers):
            object.__setattr__(self, "_fixed", self._prepare({}))
        else:
            object.__setattr__(self, "_slots", _Slots.find(self))

    @property
    def prepared(self) -> PreparedRequest | None:
        """The request, when it holds nothing of a session (None: made for each)."""
        return self._fixed

    @property
    def keeps(self) -> bool:
        """Whether this step reads its response's headers or body."""
        e = self.expect
        return bool(self.captures or e.headers or e.json or e.body)

    def request(self, values: Mapping[str, str]) -> PreparedRequest:
        """This step's request for a session's ``values``; ``FieldError`` when a value makes
        it unsendable (a line break in a header, a URL that is no longer one)."""
        if self._fixed is not None:
            return self._fixed
        if self._slots is not None:
            request = self._slots.render(values, self._body(values))
            if request is not None:
                return request
        return self._prepare(values)

    def _body(self, values: Mapping[str, str]) -> bytes:
        if self.raw_body is not None:
            return self.raw_body
        if self.json_body and self.body.names:
            values = {n: json.dumps(values[n])[1:-1] for n in self.body.names}
        return self.body.render(values).encode()

    def _prepare(self, values: Mapping[str, str]) -> PreparedRequest:
        headers = tuple((name, text.render(values)) for name, text in self.headers)
        for name, value in headers:
            check_header(name, value)
        body = self._body(values)
        if self.method == "HEAD" and body:
            raise FieldError("body", "a HEAD request has no body")
        return PreparedRequest._prepare(
            self.url.render(values), self.method, headers, body, keep=self.keeps
        )


PICKS = ("unique", "cycle", "random")


@dataclass(frozen=True, slots=True)
class TestData:
    """Rows of test data, one per session, as ``${row.COLUMN}``: session g takes row g
    (``unique``: the load ends when they run out), row g mod n (``cycle``), or a row
    drawn from (seed, g) (``random``). Every generator agrees without talking to the
    others: a session's index is global, as the schedule's split is."""

    __test__ = False  # not a test class, whatever pytest makes of its name

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...] = field(repr=False)
    pick: str = "cycle"
    uri: str | None = None  # rows read by each generator from here (``loaded``), not carried
    count: int = 0  # the rows at ``uri``, counted when the scenario was read

    def __post_init__(self) -> None:
        if self.pick not in PICKS:
            raise FieldError("pick", f"{self.pick!r} is not one of {', '.join(PICKS)}")
        if not (self.count if self.uri is not None else self.rows):
            raise FieldError("file", "no rows")
        if len(set(self.columns)) != len(self.columns):
            raise FieldError("file", "a column is named twice")
        for number, row in enumerate(self.rows, 1):
            if len(row) != len(self.columns):
                raise FieldError(
                    "file", f"row {number} has {len(row)} values for {len(self.columns)} columns"
                )

    @property
    def names(self) -> tuple[str, ...]:
        """The session values the rows give: ``row.COLUMN`` for each column."""
        return tuple(ROW + column for column in self.columns)

    @property
    def size(self) -> int:
        """How many rows there are."""
        return self.count if self.uri is not None else len(self.rows)

    def loaded(self) -> TestData:
        """These rows in memory: read from ``uri`` (``FieldError`` when that no longer
        holds what was counted), or as they are."""
        if self.uri is None or self.rows:
            return self
        columns, rows = read_rows(self.uri, read_uri(self.uri))
        if (columns, len(rows)) != (self.columns, self.count):
            raise FieldError("file", f"{self.uri!r} changed since the scenario was read")
        return TestData(columns, rows, self.pick, self.uri, self.count)

    def row(self, session: int, seed: int) -> int:
        """The row session ``session`` (its index in the whole run) takes."""
        n = self.size
        if self.pick == "unique":
            return session
        if self.pick == "cycle":
            return session % n
        return draw(session, n, seed)

    def values(self, session: int, seed: int) -> dict[str, str]:
        """Session ``session``'s values: ``row.COLUMN`` to its row's text."""
        return dict(zip(self.names, self.rows[self.row(session, seed)], strict=True))


def _check_times(times: tuple[int, int], path: str) -> None:
    low, high = times
    if not 1 <= low <= high:
        raise FieldError(path, f"{low}..{high}: at least 1, low to high")


def parse_times(value: object, path: str) -> tuple[int, int]:
    """How many times: ``3``, or ``"2..5"`` (drawn per session, each count as likely)."""
    if isinstance(value, int) and not isinstance(value, bool):
        times = (value, value)
    else:
        bounds = re.fullmatch(r"\s*(\d+)\s*\.\.\s*(\d+)\s*", str(value))
        if bounds is None or isinstance(value, bool):
            raise FieldError(path, f"{value!r} is not a count (3) or a range (2..5)")
        times = (int(bounds.group(1)), int(bounds.group(2)))
    _check_times(times, path)
    return times


@dataclass(frozen=True, slots=True)
class Loop:
    """Steps ``first`` to ``last`` (indexes into the journey's steps) sent in turn,
    ``times`` over (a range: drawn per session)."""

    first: int
    last: int
    times: tuple[int, int]

    def __post_init__(self) -> None:
        if not 0 <= self.first <= self.last:
            raise FieldError("loop", "a loop holds at least one step")
        _check_times(self.times, "loop")


@dataclass(frozen=True, slots=True)
class Journey:
    """A session's steps in order, how long a session may take from its arrival (None:
    as long as its steps take; no step starts after that), its test data, and the
    loops over runs of its steps (loops do not nest or overlap).

    ``order`` gives the steps one session sends, in turn: each step repeated, each loop
    gone round, as many times as drawn for that session; or, with ``draws``, that
    many steps, each drawn from all of them, as likely (a launched target's calls)."""

    steps: tuple[Step, ...]
    timeout_ns: int | None = None
    data: TestData | None = None
    loops: tuple[Loop, ...] = ()
    flow: Flow | None = None  # a session written in Python, instead of steps
    draws: int = 0  # each session sends this many steps drawn at random (0: all, in order)
    _order: tuple[int, ...] | None = field(init=False, repr=False, compare=False, default=None)

    def sessions(self, arrivals: int) -> int:
        """How many of ``arrivals`` start a session: with unique rows, no more than the
        rows."""
        if self.data is not None and self.data.pick == "unique":
            return min(arrivals, self.data.size)
        return arrivals

    def __post_init__(self) -> None:
        if self.flow is not None:
            if self.steps or self.loops:
                raise FieldError("steps", "a session has steps or a python flow, not both")
        elif not self.steps:
            raise FieldError("steps", "a session needs at least one step")
        elif self.steps[0].think is not None:
            raise FieldError("steps[0].think", "the first step is due when its session arrives")
        if self.timeout_ns is not None and self.timeout_ns <= 0:
            raise FieldError("session_timeout", "must be positive")
        if self.draws < 0 or (self.draws and (self.loops or not self.steps_fixed)):
            raise FieldError("draws", "a count of steps drawn, with no loop or repeat")
        end = -1
        for loop in sorted(self.loops, key=lambda loop: loop.first):
            if loop.first <= end or loop.last >= len(self.steps):
                raise FieldError("steps", "loops cannot nest or overlap")
            end = loop.last
        if self.fixed:  # the same for every session: drawn once
            object.__setattr__(self, "_order", self.order(0, 0))

    @property
    def steps_fixed(self) -> bool:
        """Whether every step and loop is sent a fixed number of times."""
        times = [s.repeat for s in self.steps] + [loop.times for loop in self.loops]
        return all(low == high for low, high in times)

    @property
    def fixed(self) -> bool:
        """Whether every session sends the same steps (nothing to draw)."""
        return not self.draws and self.steps_fixed

    def order(self, session: int, seed: int) -> tuple[int, ...]:
        """The index of each step session ``session`` sends, in the order it sends them."""
        if self._order is not None:
            return self._order
        draws = None if self.fixed else random.Random(f"{seed}/session/{session}")
        if self.draws:
            return tuple(cast(random.Random, draws).choices(range(len(self.steps)), k=self.draws))

        def times(bounds: tuple[int, int]) -> int:
            low, high = bounds
            return low if draws is None else draws.randint(low, high)

        def run(first: int, last: int) -> list[int]:
            return [i for i in range(first, last + 1) for _ in range(times(self.steps[i].repeat))]

        starts = {loop.first: loop for loop in self.loops}
        order: list[int] = []
        i = 0
        while i < len(self.steps):
            loop = starts.get(i)
            if loop is None:
                order += run(i, i)
                i += 1
            else:
                for _ in range(times(loop.times)):
                    order += run(loop.first, loop.last)
                i = loop.last + 1
        return tuple(order)

    def mean_rows(self) -> float:
        """The rows a session has on average (each step sent is one)."""
        if self.draws:
            return self.draws
        mean = lambda bounds: sum(bounds) / 2  # noqa: E731  (uniform counts)
        inside = {i for loop in self.loops for i in range(loop.first, loop.last + 1)}
        rows = sum(mean(s.repeat) for i, s in enumerate(self.steps) if i not in inside)
        for loop in self.loops:
            body = sum(mean(self.steps[i].repeat) for i in range(loop.first, loop.last + 1))
            rows += mean(loop.times) * body
        return rows
