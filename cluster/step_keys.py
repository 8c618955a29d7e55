"""The keys of a session target: ``steps`` and ``session_timeout`` (issue 23).

    - name: shop
      session_timeout: 30s          # no step starts later than this after the arrival
      data: {file: users.csv, pick: unique}   # a row per session: ${row.COLUMN}
      steps:
        - name: login
          method: POST
          url: "http://127.0.0.1:8080/login"
          json: {user: ann}
          capture: {token: {json: "$.token"}}     # or {regex: "..."} or {header: Name}
          expect: {status: 200}                    # status, headers, json, body
        - name: items
          think: 200ms                             # or uniform(100ms,1s), lognormal(...)
          url: "http://127.0.0.1:8080/items"
          headers: {Authorization: "Bearer ${token}"}
          expect: {json: {"$.items[0].id": 7}, body: "items"}
        - loop: 2..5                               # or a count; loops do not nest
          steps:
            - {name: view, url: "http://127.0.0.1:8080/items/7", repeat: 1..3}

Or ``steps: {python: "flows.py:checkout"}``: a session written in Python
(``workers/flows.py``), its module read and loaded now.

A step takes everything a request does (``method``, ``headers``, ``body``, ``json``,
``body_file``; the target's ``tls``), and ``${name}`` of a value an earlier step
captured in its URL, headers and body, and ``${row.COLUMN}`` of the session's row of
test data (``data``: ``pick`` is ``cycle`` unless it says ``unique`` or ``random``).
Any other ``${NAME}`` is the environment's, read now. A name that is neither, a JSON
path or regular expression that does not read, a status that is not one: each is a
``FieldError`` naming the step's field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

from blastradius.cluster.request_keys import Files
from blastradius.targets.fields import Fields, kind_of, read_duration, text
from blastradius.targets.spec import Latency, parse_latency_value
from blastradius.targets.validation import FieldError
from blastradius.workers.datafile import read_rows, read_uri
from blastradius.workers.flows import Flow
from blastradius.workers.journey import (
    Capture,
    Expect,
    Journey,
    Loop,
    Step,
    TestData,
    Text,
    compile_text,
    parse_statuses,
    parse_times,
)
from blastradius.workers.layout import is_uri

_SOURCES = ("json", "regex", "header")
DATA_LIMIT = 64 << 20  # bytes of test data a plan carries to every generator


def parse_journey(fields: Fields, files: Files) -> Journey:
    """A session target's ``steps`` (each a step, or a ``loop`` over steps),
    ``session_timeout`` and ``data``."""
    listed = fields.get("steps")
    data = fields.get("data")
    data = None if data is None else parse_data(data, fields.at("data"), files)
    timeout = fields.get("session_timeout")
    timeout_ns = None if timeout is None else read_duration(timeout, fields.at("session_timeout"))
    if isinstance(listed, Mapping):
        return Journey((), timeout_ns, data, flow=parse_flow(listed, fields.at("steps"), files))
    if not isinstance(listed, list) or not listed:
        raise FieldError(
            fields.at("steps"), "expected a non-empty list of steps, or {python: FILE:FUNCTION}"
        )
    env = os.environ if files.env is None else files.env
    known: set[str] = set() if data is None else set(data.names)
    steps: list[Step] = []
    paths: list[str] = []  # each step's path, for messages
    loops: list[Loop] = []

    def add(item: object, path: str) -> None:
        step = _step(Fields(item, path), len(steps), known, env, files)
        steps.append(step)
        paths.append(path)
        known.update(capture.name for capture in step.captures)

    for i, item in enumerate(listed):
        path = f"{fields.at('steps')}[{i}]"
        if not (isinstance(item, Mapping) and "loop" in item):
            add(item, path)
            continue
        block = Fields(item, path)
        times = parse_times(block.get("loop"), block.at("loop"))
        inner = block.get("steps")
        block.done()
        if not isinstance(inner, list) or not inner:
            raise FieldError(block.at("steps"), "expected a non-empty list of steps")
        first = len(steps)
        for j, step in enumerate(inner):
            at = f"{block.at('steps')}[{j}]"
            if isinstance(step, Mapping) and "loop" in step:
                raise FieldError(f"{at}.loop", "loops cannot nest")
            add(step, at)
        loops.append(Loop(first, len(steps) - 1, times))
    names = [step.name for step in steps]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise FieldError(f"{paths[i]}.name", f"{name!r} names an earlier step")
    try:
        return Journey(tuple(steps), timeout_ns, data, tuple(loops))
    except FieldError as exc:
        raise exc.within(fields.path) from None


def parse_flow(value: object, at: str, files: Files) -> Flow:
    """``{python: "flows.py:checkout"}``: the module (read now, relative to the scenario)
    and its ``async def checkout(session, row)``, loaded now to be sure it can be."""
    fields = Fields(value, at)
    spelled = text(fields.get("python"), fields.at("python"))
    fields.done()
    filename, colon, function = spelled.rpartition(":")
    if not colon or not filename or not function.isidentifier():
        raise FieldError(fields.at("python"), f"{spelled!r}: give FILE.py:FUNCTION")
    source = files.read(filename, fields.at("python"))
    try:
        flow = Flow(filename, source.decode("utf-8"), function)
        flow.load()
    except UnicodeDecodeError:
        raise FieldError(fields.at("python"), f"{filename}: not UTF-8 text") from None
    except FieldError as exc:
        raise exc.within(fields.at("python")) from None
    return flow


def parse_data(value: object, at: str, files: Files) -> TestData:
    """A session target's ``data``: ``{file: users.csv, pick: unique | cycle | random}``.

    A CSV file has a header row; a JSON lines file (``.jsonl``, ``.ndjson``) an object
    a line, each with the same keys. A file's rows travel in the plan, so it is read
    here, and one over ``DATA_LIMIT`` is bad input; a URI's are read by each generator
    (it is read here too, to check it and count its rows)."""
    fields = Fields(value, at)
    name = text(fields.get("file"), fields.at("file"))
    pick = fields.get("pick", "cycle")
    fields.done()
    where = fields.at("file")
    try:
        if is_uri(name):  # read here to check it; each generator reads it again
            columns, rows = read_rows(name, read_uri(name))
            return TestData(columns, (), text(pick, fields.at("pick")), name, len(rows))
        content = files.read(name, where)
        if len(content) > DATA_LIMIT:
            raise FieldError(
                "file",
                f"{len(content) / 2**20:.0f} MiB: test data travels in the plan, "
                f"{DATA_LIMIT >> 20} MiB at most; give a URI every node reads "
                "(s3://, gs://, file:// on a shared volume)",
            )
        columns, rows = read_rows(name, content)
        return TestData(columns, rows, text(pick, fields.at("pick")))
    except FieldError as exc:  # ``pick``, ``file``
        raise exc.within(at) from None


def _step(
    fields: Fields, index: int, known: set[str], env: Mapping[str, str], files: Files
) -> Step:
    def compiled(value: object, at: str) -> Text:
        return compile_text(text(value, at), known, env, at)

    name = fields.get("name", f"step{index}")
    name = text(name, fields.at("name"))
    url = compiled(fields.get("url"), fields.at("url"))
    method = fields.get("method", "GET")
    method = text(method, fields.at("method")).upper()
    headers = []
    given = fields.get("headers")
    if given is not None:
        if not isinstance(given, Mapping):
            raise FieldError(fields.at("headers"), "expected a mapping of header names to values")
        for header, value in given.items():
            at = f"{fields.at('headers')}.{header}"
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise FieldError(at, f"expected text, got {kind_of(value)}")
            headers.append((str(header), compiled(str(value), at)))
    body, json_body, raw_body = Text(("",)), False, None
    bodies = [key for key in ("body", "json", "body_file") if fields.get(key) is not None]
    if len(bodies) > 1:
        raise FieldError(fields.at(bodies[1]), "give one of body, json or body_file")
    if bodies == ["body"]:
        body = compiled(fields.get("body"), fields.at("body"))
    elif bodies == ["json"]:
        value = fields.get("json")
        if not isinstance(value, (dict, list)):
            raise FieldError(
                fields.at("json"), f"expected a mapping or a list, got {kind_of(value)}"
            )
        spelled = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        escaped = {name: json.dumps(env[name])[1:-1] for name in _names(spelled) if name in env}
        body, json_body = compile_text(spelled, known, escaped, fields.at("json")), True
    elif bodies == ["body_file"]:
        raw_body = files.read(fields.get("body_file"), fields.at("body_file"))
    if json_body and not any(h.lower() == "content-type" for h, _ in headers):
        headers.append(("Content-Type", Text(("application/json",))))
    think = fields.get("think")
    think = None if think is None else _think(think, fields.at("think"))
    repeat = fields.get("repeat", 1)
    repeat = parse_times(repeat, fields.at("repeat"))
    captures = _captures(fields.get("capture"), fields.at("capture"))
    expect = _expect(fields.get("expect"), fields.at("expect"))
    fields.done()
    try:
        return Step(
            name,
            url,
            method,
            tuple(headers),
            body,
            json_body=json_body,
            raw_body=raw_body,
            think=think,
            captures=captures,
            expect=expect,
            repeat=repeat,
        )
    except FieldError as exc:  # a step names its own field: ``method``, ``url``, ...
        raise exc.within(fields.path) from None


def _names(text: str) -> set[str]:
    """The ``${NAME}`` references in ``text``."""
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))


def _think(value: object, at: str) -> Latency:
    if isinstance(value, bool) or not isinstance(value, str):
        raise FieldError(at, "give a duration with its unit (200ms) or a distribution")
    try:
        return parse_latency_value(value)
    except ValueError as exc:
        raise FieldError(at, str(exc)) from None


def _captures(value: object, at: str) -> tuple[Capture, ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise FieldError(
            at, "expected a mapping of names to {json: ...}, {regex: ...} or {header: ...}"
        )
    captures = []
    for name, source in value.items():
        where = f"{at}.{name}"
        if not isinstance(source, Mapping) or len(source) != 1:
            raise FieldError(where, f"give one of {', '.join(_SOURCES)}")
        ((kind, expression),) = source.items()
        if kind not in _SOURCES:
            raise FieldError(f"{where}.{kind}", f"unknown key (known here: {', '.join(_SOURCES)})")
        expression = text(expression, f"{where}.{kind}")
        try:
            captures.append(Capture(str(name), kind, expression))
        except FieldError as exc:  # a capture names itself: ``token``, ``token.json``
            raise exc.within(at) from None
    return tuple(captures)


def _expect(value: object, at: str) -> Expect:
    if value is None:
        return Expect()
    fields = Fields(value, at)
    status = fields.get("status")
    statuses = () if status is None else parse_statuses(status, fields.at("status"))
    headers = fields.get("headers") or {}
    if not isinstance(headers, Mapping):
        raise FieldError(fields.at("headers"), "expected a mapping of header names to values")
    wanted_headers = tuple(
        (str(k), text(v, f"{fields.at('headers')}.{k}")) for k, v in headers.items()
    )
    values = fields.get("json") or {}
    if not isinstance(values, Mapping):
        raise FieldError(fields.at("json"), "expected a mapping of JSON paths to values")
    body = fields.get("body")
    bodies = [] if body is None else body if isinstance(body, list) else [body]
    texts = tuple(text(b, fields.at("body")) for b in bodies)
    fields.done()
    try:
        return Expect(statuses, wanted_headers, tuple(values.items()), texts)
    except FieldError as exc:  # ``json.$.x``: a path that does not read
        raise exc.within(at) from None
