"""``blastradius load URL``: a one-target scenario built from flags, validated like a file.

Flags become a scenario document, so a run from flags and a run from a file go
through the same validation, driver, run directory and rows. A validation
error names the flag it came from rather than the document path.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blastradius.cluster.scenario import Scenario, parse_scenario
from blastradius.targets.validation import FieldError

# Document paths as the flags that fill them (longest first where one is a prefix).
_FLAGS = (
    ("targets[0].headers.", "--header "),
    ("targets[0].tls.verify", "--insecure"),
    ("targets[0].tls.ca", "--ca"),
    ("targets[0].tls.cert", "--cert"),
    ("targets[0].tls.key", "--key"),
    ("targets[0].tls", "--ca"),
    ("targets[0].body_file", "--body-file"),
    ("targets[0].method", "--method"),
    ("targets[0].body", "--body"),
    ("targets[0].json", "--json"),
    ("targets[0].url", "URL"),
    ("targets[0].name", "--name"),
    ("targets[0].streams", "--streams"),
    ("targets[0].http", "--http2"),
    ("load.connections", "--connections"),
    ("load.duration", "--duration"),
    ("load.requests", "--requests"),
    ("load.timeout", "--timeout"),
    ("load.arrival", "--arrival"),
    ("load.rate", "--rate"),
    ("load", "--rate"),
    ("generators", "--generators"),
    ("name", "--name"),
)


@dataclass(frozen=True)
class UrlRun:
    """The flags of ``blastradius load``; strings and numbers as the user gave them."""

    url: str
    rate: float
    duration: str | None = None
    requests: int | None = None
    timeout: str = "1s"
    arrival: str = "constant"
    method: str = "GET"
    headers: Sequence[str] = ()
    body: str | None = None
    json_text: str | None = None
    body_file: str | None = None
    insecure: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    connections: int = 0
    generators: int | None = None
    name: str = "load"
    http2: bool = False
    streams: int | None = None


def document(flags: UrlRun) -> dict[str, Any]:
    """The scenario document the flags describe; ``ValueError`` names a malformed flag."""
    load: dict[str, Any] = {"rate": flags.rate, "timeout": flags.timeout, "arrival": flags.arrival}
    load["connections"] = flags.connections
    if flags.duration is not None:
        load["duration"] = flags.duration
    if flags.requests is not None:
        load["requests"] = flags.requests
    target: dict[str, Any] = {"name": flags.name, "url": flags.url, "method": flags.method}
    if flags.headers:
        target["headers"] = dict(_header(text) for text in flags.headers)
    bodies = [(k, v) for k, v in (("body", flags.body), ("body_file", flags.body_file)) if v]
    if flags.json_text is not None:
        try:
            bodies.append(("json", json.loads(flags.json_text)))
        except json.JSONDecodeError as exc:
            raise ValueError(f"--json: not valid JSON ({exc.msg} at {exc.pos})") from None
    if len(bodies) > 1:
        raise ValueError("--body: give one of --body, --json or --body-file")
    target.update(bodies)
    tls: dict[str, Any] = {
        k: v for k, v in (("ca", flags.ca), ("cert", flags.cert), ("key", flags.key)) if v
    }
    if flags.insecure:
        tls["verify"] = False
    if tls:
        target["tls"] = tls
    if flags.http2:
        target["http"] = "2"
    if flags.streams is not None:
        target["streams"] = flags.streams
    result: dict[str, Any] = {"name": flags.name, "load": load, "targets": [target]}
    if flags.generators is not None:
        result["generators"] = flags.generators
    return result


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise ValueError(f"--header {text!r}: expected 'Name: value'")
    return name.strip(), value.strip()


def url_scenario(flags: UrlRun, base: Path | None = None) -> Scenario:
    """Validate the flags as a scenario; errors name the flag (``--rate: must be > 0``)."""
    try:
        return parse_scenario(document(flags), base)
    except FieldError as exc:
        raise ValueError(flag_message(exc)) from None


def flag_message(error: FieldError) -> str:
    """A scenario's field error, with the field's path replaced by the flag that fills it
    (``--header NAME`` for a header); the path itself for a field no flag fills."""
    for path, flag in _FLAGS:
        if error.path.startswith(path):
            return f"{flag}{error.path[len(path) :]}: {error.problem}"
    return str(error)
