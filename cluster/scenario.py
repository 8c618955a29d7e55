"""Scenario files: YAML into frozen, validated dataclasses.

Every key is known (an unknown key is an error naming it with its path);
durations take units (``30s``, ``500ms``; a bare number is seconds here);
``--set load.rate=500`` overrides apply to the raw document before
validation, so an override is checked exactly like the file. Errors are
``ValueError`` with a one-line message that begins with the field's path.

    name: blast-radius
    load:
      rate: 1000             # requests/s in total, split over generators
      duration: 30s          # or requests: 100000 (or both: whichever ends first)
      arrival: constant      # constant | poisson
      timeout: 1s            # deadline from the intended send time
      seed: 0                # for poisson arrivals
      max_in_flight: 10000   # per generator
      stages:                # instead of rate/duration: steps, or ramps with ramp: true
        - {duration: 10s, rate: 100}
        - {duration: 20s, rate: 1000, ramp: true}   # linear from the previous rate
      closed: {concurrency: 50}   # closed loop instead of a schedule (comparison only)
    generators: 2
    dependency:              # launched; or {url: ..., endpoints: N} for a running one
      latency: "200*9,30000"
      errors: "0*10"
      faults: [{at: 10s, endpoint: 9, latency: 30s}]
      seed: 1
    targets:
      - {name: sync, kind: blocking, threads: 500, dependency_timeout: 1s}
      - {name: async, kind: async, max_connections: 0}
      - {name: guarded, kind: blocking, breaker: {failures: 50%}, deadline: propagate}
                                  # resilience patterns: targets/patterns.py
      - {name: mine, url: "http://127.0.0.1:8080/api"}   # or urls: [...], cycled
      - name: api                 # any HTTP/1.1 service, with the requests it takes
        method: POST              # GET HEAD POST PUT PATCH DELETE OPTIONS
        url: "https://api.internal/orders"
        headers: {Authorization: "Bearer ${API_TOKEN}"}   # ${NAME}: from the environment
        json: {item: 42}          # or body: text, or body_file: path
        tls: {ca: ca.pem}         # or {verify: false}; cert: and key: for mutual TLS
      - name: mix
        requests:                 # templates, cycled, or drawn by weight (seeded)
          - {url: "http://127.0.0.1:8080/a", weight: 9}
          - {url: "http://127.0.0.1:8080/b", method: DELETE, weight: 1}
      - name: shop                # sessions of steps (cluster/step_keys.py)
        steps:
          - {url: "http://127.0.0.1:8080/login", capture: {token: {json: "$.token"}}}
          - {url: "http://127.0.0.1:8080/items", headers: {X-T: "${token}"}, think: 1s}

Files (``body_file``, ``tls.ca``, ``tls.cert``, ``tls.key``) are read when the
scenario is loaded, relative to the scenario file's directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from blastradius.cluster.request_keys import (
    Files,
    parse_requests,
    parse_tls,
    redacted,
)
from blastradius.cluster.slo_keys import parse_objectives
from blastradius.cluster.step_keys import parse_journey
from blastradius.targets.dependency import DependencyConfig
from blastradius.targets.dependency import parse_config as parse_dependency_config
from blastradius.targets.faults import Fault
from blastradius.targets.fields import Fields, kind_of, number, read_duration, text, whole
from blastradius.targets.patterns import Patterns, read_deadline, read_patterns
from blastradius.targets.proxy import ProxyConfig
from blastradius.targets.proxy import parse_config as parse_proxy_config
from blastradius.targets.validation import FieldError, http_url
from blastradius.workers.generator import HTTP_VERSIONS, ClosedLoop
from blastradius.workers.journey import Journey
from blastradius.workers.run_record import Objectives, effective
from blastradius.workers.schedule import ARRIVALS, Schedule, Stage
from blastradius.workers.template import RequestTemplate, Tls

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
KINDS = ("blocking", "async")


@dataclass(frozen=True)
class Load:
    """How much traffic, in what shape, with what deadline."""

    shape: Schedule | ClosedLoop
    timeout_ns: int
    max_in_flight: int = 10_000
    connections: int = 0  # opened per origin before the start, over all generators
    seed: int = 0

    @property
    def closed(self) -> bool:
        """Closed loop (for comparison with closed-loop tools) rather than a schedule."""
        return isinstance(self.shape, ClosedLoop)


def _stages(value: object, path: str) -> tuple[Stage, ...]:
    if not isinstance(value, list) or not value:
        raise FieldError(path, "expected a non-empty list of stages")
    stages, previous_rps = [], 0.0
    for i, item in enumerate(value):
        fields = Fields(item, f"{path}[{i}]")
        duration = read_duration(fields.get("duration"), fields.at("duration"))
        rate = number(fields.get("rate"), fields.at("rate"), strict=False)
        ramp = fields.get("ramp", False)
        if not isinstance(ramp, bool):
            raise FieldError(fields.at("ramp"), "expected true or false")
        fields.done()
        stages.append(Stage(duration, previous_rps if ramp else rate, rate))
        previous_rps = rate
    return tuple(stages)


def parse_load(value: object) -> Load:
    """The ``load`` block."""
    fields = Fields(value, "load")
    timeout_ns = read_duration(fields.get("timeout", "1s"), fields.at("timeout"))
    max_in_flight = whole(fields.get("max_in_flight", 10_000), fields.at("max_in_flight"))
    duration = fields.get("duration")
    duration_ns = None if duration is None else read_duration(duration, fields.at("duration"))
    requests = fields.get("requests")
    if requests is not None:
        requests = whole(requests, fields.at("requests"))
    arrival = fields.get("arrival", "constant")
    if arrival not in ARRIVALS:
        raise FieldError(fields.at("arrival"), f"{arrival!r} is not one of {', '.join(ARRIVALS)}")
    seed = whole(fields.get("seed", 0), fields.at("seed"), strict=False)
    connections = whole(fields.get("connections", 0), fields.at("connections"), strict=False)
    shape = _load_shape(fields, duration_ns, requests, arrival, seed)
    fields.done()
    return Load(shape, timeout_ns, max_in_flight, connections, seed)


def _load_shape(
    fields: Fields, duration_ns: int | None, requests: int | None, arrival: str, seed: int
) -> Schedule | ClosedLoop:
    rate, stages, closed = fields.get("rate"), fields.get("stages"), fields.get("closed")
    shapes = (("rate", rate), ("stages", stages), ("closed", closed))
    given = [key for key, value in shapes if value is not None]
    if len(given) != 1:
        which = " and ".join(given) if given else "none of them"
        raise FieldError("load", f"give exactly one of rate, stages or closed (got {which})")
    if closed is not None:
        block = Fields(closed, fields.at("closed"))
        concurrency = whole(block.get("concurrency"), block.at("concurrency"))
        block.done()
        if duration_ns is None and requests is None:
            raise FieldError("load.duration", "give a duration or a request count")
        return ClosedLoop(concurrency, duration_ns, requests)
    if stages is not None:
        if duration_ns is not None:
            raise FieldError("load.duration", "stages have their own durations; remove this")
        return Schedule(_stages(stages, fields.at("stages")), arrival, requests, seed)
    rate_rps = number(rate, fields.at("rate"))
    if duration_ns is None and requests is None:
        raise FieldError("load.duration", "give a duration or a request count")
    return Schedule.constant_rate(rate_rps, duration_ns, requests, arrival, seed)


@dataclass(frozen=True)
class Dependency:
    """The dependency: launched from its ``config``, or a running one at ``url``."""

    config: DependencyConfig | None = None
    url: str | None = None
    endpoints: int = 0

    @property
    def launched(self) -> bool:
        """Whether the driver starts it (rather than using a running one)."""
        return self.url is None

    @property
    def faults(self) -> tuple[Fault, ...]:
        """The fault schedule of a launched one (none for a running one)."""
        return () if self.config is None else self.config.faults


def parse_dependency(value: object) -> Dependency:
    """The ``dependency`` block: a running one's ``url`` and ``endpoints``, or a launched
    one's configuration (``targets.dependency.parse_config``)."""
    fields = Fields(value, "dependency")
    url = fields.get("url")
    if url is not None:
        http_url(text(url, fields.at("url")), fields.at("url"))
        endpoints = whole(fields.get("endpoints", 1), fields.at("endpoints"))
        for key in ("latency", "errors", "faults", "seed"):
            if fields.get(key) is not None:
                raise FieldError(
                    fields.at(key),
                    "a running dependency (url) is not configured here; remove it or remove url",
                )
        fields.done()
        return Dependency(url=url.rstrip("/"), endpoints=endpoints)
    if fields.get("latency") is None:
        raise FieldError("dependency.latency", "missing (or give url: for a running dependency)")
    config = parse_dependency_config(value, "dependency", known=("url",))
    return Dependency(config, None, len(config.latencies))


@dataclass(frozen=True)
class Proxy:
    """A fault-injecting proxy the driver launches (``blastradius serve proxy``) in front of
    a real dependency, on a fixed ``port`` your service is configured to call."""

    name: str
    port: int
    config: ProxyConfig


def parse_proxy(value: object, path: str) -> Proxy:
    """One entry of ``proxies``: its ``name`` and ``port``, and the proxy's configuration
    (``targets.proxy.parse_config``)."""
    fields = Fields(value, path)
    name = text(fields.get("name"), fields.at("name"))
    if not _NAME.match(name):
        raise FieldError(fields.at("name"), f"{name!r} must be letters, digits, '_', '.' or '-'")
    port = whole(fields.get("port", 0), fields.at("port"), strict=False)
    if port > 65535:
        raise FieldError(fields.at("port"), f"{port} is not a port")
    return Proxy(name, port, parse_proxy_config(value, path, known=("name", "port")))


@dataclass(frozen=True)
class Target:
    """A service under test: launched (``kind``) or given by the requests to send it."""

    name: str
    kind: str | None = None  # blocking | async | None (requests given)
    requests: tuple[RequestTemplate, ...] = ()
    threads: int = 500
    max_connections: int = 0
    dependency_timeout_s: float | None = None
    tls: Tls | None = None
    slo: Objectives | None = None  # its own, over the scenario's
    journey: Journey | None = None  # a session target's steps (then no requests)
    session_calls: int = 0  # a launched target's: each session makes this many calls (0: none)
    http: str = "1.1"  # the HTTP it is sent: "1.1", "2" or "auto" (workers.generator.Share)
    dependency_http: str = "1.1"  # a launched async target's calls to its dependency: or "2"
    streams: int = 100  # HTTP/2: requests at once on a connection
    patterns: Patterns = field(default_factory=Patterns)  # only deadline unless launched

    @property
    def launched(self) -> bool:
        """Whether the driver starts this target."""
        return self.kind is not None

    @property
    def urls(self) -> tuple[str, ...]:
        """The URLs of a target given by requests (empty for a launched one)."""
        return tuple(t.url for t in self.requests)


def parse_target(
    value: object,
    path: str,
    base: Path | None = None,
    env: Mapping[str, str] | None = None,
    over: bool = False,
) -> Target:
    """One entry of ``targets``; files are read from ``base``, ``${NAME}`` from ``env``;
    ``over``: the scenario has objectives of its own, which the target's ``slo:`` is over."""
    files = Files(base or Path.cwd(), env)
    fields = Fields(value, path)
    name = text(fields.get("name"), fields.at("name"))
    if not _NAME.match(name):
        raise FieldError(
            fields.at("name"),
            f"{name!r} must be letters, digits, '_', '.' or '-' (it names a directory)",
        )
    slo = fields.get("slo")
    slo = None if slo is None else parse_objectives(slo, fields.at("slo"), over=over)
    kind, url, urls = fields.get("kind"), fields.get("url"), fields.get("urls")
    listed, steps = fields.get("requests"), fields.get("steps")
    if sum(x is not None for x in (kind, url, urls, listed, steps)) != 1:
        raise FieldError(path, "give exactly one of kind (launched), url, urls, requests or steps")
    if steps is not None:
        journey = parse_journey(fields, files)
        tls = fields.get("tls")
        tls = None if tls is None else parse_tls(tls, fields.path, files)
        http, streams = _protocol(fields)
        deadline = _deadline(fields)
        fields.done()
        return Target(
            name,
            None,
            (),
            tls=tls,
            slo=slo,
            journey=journey,
            http=http,
            streams=streams,
            patterns=deadline,
        )
    if kind is None:
        templates = parse_requests(fields, files)
        tls = fields.get("tls")
        tls = None if tls is None else parse_tls(tls, fields.path, files)
        http, streams = _protocol(fields)
        deadline = _deadline(fields)
        fields.done()
        return Target(
            name, None, templates, tls=tls, slo=slo, http=http, streams=streams, patterns=deadline
        )
    if kind not in KINDS:
        raise FieldError(fields.at("kind"), f"{kind!r} is not one of {', '.join(KINDS)}")
    timeout = fields.get("dependency_timeout")
    timeout_s = (
        None if timeout is None else read_duration(timeout, fields.at("dependency_timeout")) / 1e9
    )
    threads, max_connections = 500, 0  # the one its kind has is read: the other is unknown
    dependency_http = "1.1"
    if kind == "blocking":
        threads = whole(fields.get("threads", threads), fields.at("threads"))
    else:
        max_connections = whole(
            fields.get("max_connections", 0), fields.at("max_connections"), strict=False
        )
        dependency_http = _version(fields, "dependency_http", ("1.1", "2"))
    calls = fields.get("session_calls")
    calls = 0 if calls is None else whole(calls, fields.at("session_calls"))
    patterns = read_patterns(fields)
    fields.done()
    if kind == "async" and patterns.shed is not None and not max_connections:
        raise FieldError(
            fields.at("shed"), "needs max_connections: without it the async target has no queue"
        )
    return Target(
        name,
        kind,
        (),
        threads,
        max_connections,
        timeout_s,
        slo=slo,
        session_calls=calls,
        dependency_http=dependency_http,
        patterns=patterns,
    )


def _deadline(fields: Fields) -> Patterns:
    """A target given by its requests takes one pattern key: ``deadline: propagate``,
    the generator sending each request's deadline (the service honours it or not)."""
    return Patterns(deadline=read_deadline(fields))


def _version(fields: Fields, key: str, versions: tuple[str, ...]) -> str:
    """An HTTP version key (default 1.1); YAML reads ``1.1`` and ``2`` as numbers."""
    value = fields.get(key, "1.1")
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = f"{value:g}"
    if value not in versions:
        raise FieldError(fields.at(key), f"{value!r} is not one of {', '.join(versions)}")
    return value


def _protocol(fields: Fields) -> tuple[str, int]:
    """A target's ``http`` (1.1, 2 or auto; YAML reads the first two as numbers) and
    ``streams`` (HTTP/2 only)."""
    http = _version(fields, "http", HTTP_VERSIONS)
    streams = fields.get("streams")
    if streams is not None and http == "1.1":
        raise FieldError(fields.at("streams"), "streams are HTTP/2's: give http: 2 or auto")
    return http, 100 if streams is None else whole(streams, fields.at("streams"))


@dataclass(frozen=True)
class Scenario:
    """A whole scenario: the load, the generators, the dependency and the targets."""

    name: str
    load: Load
    targets: tuple[Target, ...]
    generators: int | None = None  # None: one per free CPU (at most 4 on an embedded cluster)
    dependency: Dependency | None = None
    source: dict | None = None  # the validated document, for the run manifest
    slo: Objectives | None = None  # for every target (a target's own are over these)
    proxies: tuple[Proxy, ...] = ()

    def objectives(self) -> dict[str, Objectives]:
        """Each target's objectives (a target with none is left out)."""
        return effective(
            [t.name for t in self.targets], self.slo, {t.name: t.slo for t in self.targets if t.slo}
        )


def parse_scenario(
    document: object, base: Path | None = None, env: Mapping[str, str] | None = None
) -> Scenario:
    """Validate a scenario document (parsed YAML) into a ``Scenario``.

    Relative file names are read from ``base`` (default: the working directory);
    ``${NAME}`` in header values reads ``env`` (default: the process environment).
    """
    fields = Fields(document, "")
    name = text(fields.get("name"), "name")
    if not _NAME.match(name):
        raise FieldError("name", f"{name!r} must be letters, digits, '_', '.' or '-'")
    if fields.get("load") is None:
        raise FieldError("load", "missing")
    load = parse_load(fields.get("load"))
    generators = fields.get("generators")
    if generators is not None:
        generators = whole(generators, "generators")
    dependency = fields.get("dependency")
    dependency = None if dependency is None else parse_dependency(dependency)
    targets = fields.get("targets")
    if not isinstance(targets, list) or not targets:
        raise FieldError("targets", "expected a non-empty list of targets")
    slo = fields.get("slo")
    slo = None if slo is None else parse_objectives(slo, "slo")
    parsed = tuple(
        parse_target(t, f"targets[{i}]", base, env, over=slo is not None)
        for i, t in enumerate(targets)
    )
    names = [t.name for t in parsed]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise FieldError("targets", f"the name {duplicate!r} is used twice")
    launched = [i for i, t in enumerate(parsed) if t.launched]
    if launched and dependency is None:
        raise FieldError(
            f"targets[{launched[0]}].kind", "a launched target needs a dependency block"
        )
    sessions = [i for i, t in enumerate(parsed) if t.journey is not None]
    if sessions and load.closed:
        raise FieldError(
            f"targets[{sessions[0]}].steps",
            "sessions arrive open loop: load.closed is not for them",
        )
    proxies = fields.get("proxies", [])
    if not isinstance(proxies, list):
        raise FieldError("proxies", "expected a list of proxies")
    proxies = tuple(parse_proxy(p, f"proxies[{i}]") for i, p in enumerate(proxies))
    for key, what in ((lambda p: p.name, "name"), (lambda p: p.port, "port")):
        values = [key(p) for p in proxies if key(p) != 0]
        twice = next((v for v in values if values.count(v) > 1), None)
        if twice is not None:
            raise FieldError("proxies", f"the {what} {twice!r} is used twice")
    fields.done()
    source = redacted(fields.value)
    return Scenario(name, load, parsed, generators, dependency, source, slo, proxies)


def apply_override(document: dict, assignment: str) -> None:
    """Apply one ``--set PATH=VALUE`` (``load.rate=500``, ``targets.0.threads=8``) in place.

    VALUE is read as YAML (``500`` is a number, ``1s`` text, ``[1, 2]`` a list).
    """
    path, sep, raw = assignment.partition("=")
    if not sep or not path.strip():
        raise ValueError(f"--set {assignment!r}: expected KEY=VALUE, e.g. load.rate=500")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ValueError(f"--set {assignment!r}: the value is not valid YAML") from None
    keys = path.strip().split(".")
    node: Any = document
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        index: str | int = key
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ValueError(f"--set {path}: {'.'.join(keys[:depth])} has no item {key}")
            index = int(key)
        elif not isinstance(node, dict):
            raise ValueError(f"--set {path}: {'.'.join(keys[:depth])} is not a mapping")
        if last:
            node[index] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(index), (dict, list)):
                node[index] = {}
            node = node[index]


def load_scenario(path: str | Path, overrides: Sequence[str] = ()) -> Scenario:
    """Read, override and validate a scenario file."""
    path = Path(path)
    try:
        source = path.read_text()
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(f"{path}: not valid YAML{where}") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a mapping at the top, got {kind_of(document)}")
    for assignment in overrides:
        apply_override(document, assignment)
    return parse_scenario(document, path.parent)
