"""The run manifest, ``run.json``, defined once: what the driver writes and analysis reads.

Frozen records, each with ``to_json`` and ``from_json``; no other module spells a
run.json key. ``from_json`` takes what any blastradius wrote: a file without a
``format`` key is format 0 (written before formats were numbered; the same keys as
format 1), and a key a record does not know is ignored, so a newer writer's additions
do not stop an older reader. A format newer than ``FORMAT`` is refused by name.

A key whose value is absent is left out of the file, as it always was: ``aborted``,
``proxies`` and ``faults`` only when they happened, a generator's counts once it ended,
``requests`` and ``tls`` only for a target given by its requests, ``patterns`` and
``dependency_calls`` only for a launched one that has them, ``error`` only for a run
that failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, ClassVar

from blastradius.workers.kinds import ERROR_KINDS

FORMAT = 1  # 1: run.json says its format (0: the same keys, before they were numbered)

# Objective names (``slo:``): floors, then ceilings in ms, then ``errors.<kind>`` shares.
# A session target's: the share of sessions that completed (at least), and the p99 of a
# completed journey's duration from its arrival (at most, ms).
SESSION = ("session_availability", "session_p99")
AT_LEAST = ("availability", "goodput_rps", "session_availability")
LATENCY = ("p50", "p90", "p99", "p999", "p9999", "max", "service_p99")
ERROR_PREFIX = "errors."

Json = dict[str, Any]

REDACTED = "<redacted>"  # what is written for a secret: a header value, a URL password


class RunStatus(StrEnum):
    """A run's status (it sets the exit code)."""

    RUNNING = "running"  # the driver is at work (or died: nothing finished the run)
    COMPLETED = "completed"  # every generator finished
    PARTIAL = "partial"  # a generator or its node was lost
    FAILED = "failed"  # a service did not start, a generator failed, or the run broke;
    # ``error`` says why
    INTERRUPTED = "interrupted"  # stopped by a signal; what was sent is flushed


class GeneratorState(StrEnum):
    """A generator's state."""

    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # asked to stop early (Ctrl-C, an objective's abort)
    LOST = "lost"  # its process or node died; ``missing`` says which window
    FAILED = "failed"  # it raised (its output failed, say); ``error`` says why


def _absent_left_out(document: Json) -> Json:
    return {key: value for key, value in document.items() if value is not None}


def _counts(document: Mapping[str, Any] | None) -> dict[str, int]:
    return {str(kind): int(n) for kind, n in (document or {}).items()}


@dataclass(frozen=True)
class Missing:
    """The window of a lost or failed generator's schedule whose rows may be missing."""

    start: str | None
    end: str | None  # None: the load had no planned end

    def to_json(self) -> Json:
        return {"from": self.start, "to": self.end}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Missing:
        return cls(document.get("from"), document.get("to"))


@dataclass(frozen=True)
class GeneratorEnd:
    """One generator of a target: where it ran, its state, and once it ended how.

    ``rows``, ``ok``, ``errors`` and ``send_lag_p99_ms`` come from its summary when it
    ended on its own or was stopped; ``lost_at``, ``error`` and ``missing`` when it was
    lost or failed.
    """

    worker: int
    node: str
    state: GeneratorState = GeneratorState.RUNNING
    rows: int | None = None
    ok: int | None = None
    errors: Mapping[str, int] | None = None
    send_lag_p99_ms: float | None = None
    lost_at: str | None = None
    lost_at_ns: int | None = None
    error: str | None = None
    missing: Missing | None = None
    checks: Mapping[str, int] | None = None  # a session target's failed checks, by name

    @property
    def gone(self) -> bool:
        """Lost or failed: its share of the schedule from ``missing`` on may be missing."""
        return self.state in (GeneratorState.LOST, GeneratorState.FAILED)

    @property
    def fate(self) -> str:
        """How a generator that is ``gone`` went, in words: "was lost" or "failed"."""
        return "was lost" if self.state == GeneratorState.LOST else self.state.value

    def to_json(self) -> Json:
        document: Json = {"worker": self.worker, "node": self.node, "state": self.state}
        if self.rows is not None:
            document |= {
                "rows": self.rows,
                "ok": self.ok,
                "errors": dict(self.errors or {}),
                "send_lag_p99_ms": self.send_lag_p99_ms,
            }
        return document | _absent_left_out(
            {
                "lost_at": self.lost_at,
                "lost_at_ns": self.lost_at_ns,
                "error": self.error,
                "missing": None if self.missing is None else self.missing.to_json(),
                "checks": dict(self.checks) if self.checks else None,
            }
        )

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> GeneratorEnd:
        missing = document.get("missing")
        errors = document.get("errors")
        return cls(
            worker=int(document.get("worker", 0)),
            node=str(document.get("node", "")),
            state=GeneratorState(document.get("state", GeneratorState.RUNNING)),
            rows=document.get("rows"),
            ok=document.get("ok"),
            errors=None if errors is None else _counts(errors),
            send_lag_p99_ms=document.get("send_lag_p99_ms"),
            lost_at=document.get("lost_at"),
            lost_at_ns=document.get("lost_at_ns"),
            error=document.get("error"),
            missing=None if missing is None else Missing.from_json(missing),
            checks=None if document.get("checks") is None else _counts(document["checks"]),
        )


@dataclass(frozen=True)
class RouteCounts:
    """What a proxy did on one route: requests, and the faults it injected in them."""

    route: str
    requests: int = 0
    delayed: int = 0
    errors: int = 0
    resets: int = 0
    hangs: int = 0
    throttled: int = 0

    COUNTS: ClassVar[tuple[str, ...]] = (
        "requests",
        "delayed",
        "errors",
        "resets",
        "hangs",
        "throttled",
    )

    def counts(self) -> tuple[int, ...]:
        """The counts, in ``COUNTS`` order."""
        return tuple(getattr(self, name) for name in self.COUNTS)

    def to_json(self) -> Json:
        return {"route": self.route, **dict(zip(self.COUNTS, self.counts(), strict=True))}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RouteCounts:
        return cls(str(document["route"]), *(int(document.get(n, 0)) for n in cls.COUNTS))


@dataclass(frozen=True)
class DataWritten:
    """A session target's test data: its rows, how each session took one, and the
    sessions the load's arrivals started (fewer than the arrivals when unique rows ran
    out, which ends the load)."""

    rows: int
    pick: str
    arrivals: int
    sessions: int

    def to_json(self) -> Json:
        return {
            "rows": self.rows,
            "pick": self.pick,
            "arrivals": self.arrivals,
            "sessions": self.sessions,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> DataWritten:
        return cls(
            int(document["rows"]),
            str(document["pick"]),
            int(document["arrivals"]),
            int(document["sessions"]),
        )


@dataclass(frozen=True)
class ProxyCounts:
    """A proxy's counts (its ``/_blastradius/stats``, or their change over a load)."""

    routes: tuple[RouteCounts, ...] = ()
    unmatched: int = 0  # requests no route matched
    upstream_errors: int = 0  # requests the upstream could not answer

    def since(self, before: ProxyCounts) -> ProxyCounts:
        """What the proxy did between ``before`` and these counts."""
        routes = tuple(
            RouteCounts(a.route, *(x - y for x, y in zip(a.counts(), b.counts(), strict=True)))
            for b, a in zip(before.routes, self.routes, strict=True)
        )
        return ProxyCounts(
            routes, self.unmatched - before.unmatched, self.upstream_errors - before.upstream_errors
        )

    def to_json(self) -> Json:
        return {
            "routes": [r.to_json() for r in self.routes],
            "unmatched": self.unmatched,
            "upstream_errors": self.upstream_errors,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ProxyCounts:
        return cls(
            tuple(RouteCounts.from_json(r) for r in document.get("routes", ())),
            int(document.get("unmatched", 0)),
            int(document.get("upstream_errors", 0)),
        )


@dataclass(frozen=True)
class FaultMark:
    """A scheduled fault: when (s from the load start) and what changed."""

    at_s: float
    label: str

    def to_json(self) -> Json:
        return {"at_s": self.at_s, "label": self.label}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> FaultMark:
        return cls(float(document["at_s"]), str(document["label"]))


@dataclass(frozen=True)
class PatternEvent:
    """What a launched target's pattern did (``targets/guards.py``): a state change
    (``count`` 1), or an episode of one action repeated (``count`` times, until
    ``until_s``); times in s from the load start."""

    at_s: float
    pattern: str
    event: str
    count: int = 1
    until_s: float | None = None
    endpoint: int | None = None
    value: float | None = None

    @property
    def label(self) -> str:
        """The event in a few words, for a plot's mark."""
        where = "" if self.endpoint is None else f" {self.endpoint}"
        what = f"{self.pattern}{where}"
        if self.event != self.pattern:  # "shed x7", not "shed shed x7"
            what += f" {self.event.replace('_', '-')}"
        if self.value is not None:
            return f"{what} {self.value:g}"
        return what if self.count == 1 else f"{what} x{self.count}"

    def to_json(self) -> Json:
        document: Json = {"at_s": self.at_s, "pattern": self.pattern, "event": self.event}
        document["count"] = self.count
        return document | _absent_left_out(
            {"until_s": self.until_s, "endpoint": self.endpoint, "value": self.value}
        )

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PatternEvent:
        until, endpoint, value = (document.get(k) for k in ("until_s", "endpoint", "value"))
        return cls(
            float(document["at_s"]),
            str(document["pattern"]),
            str(document["event"]),
            int(document.get("count", 1)),
            None if until is None else float(until),
            None if endpoint is None else int(endpoint),
            None if value is None else float(value),
        )


@dataclass(frozen=True)
class PatternsWritten:
    """A launched target's patterns at the end of its load: its ``/stats`` counts
    (``pattern.event``), its events, and the events it could not keep."""

    counts: Mapping[str, int] = field(default_factory=dict)
    events: tuple[PatternEvent, ...] = ()
    dropped: int = 0

    def to_json(self) -> Json:
        return {
            "counts": dict(self.counts),
            "events": [e.to_json() for e in self.events],
            "dropped": self.dropped,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PatternsWritten:
        return cls(
            {str(k): int(v) for k, v in document.get("counts", {}).items()},
            tuple(PatternEvent.from_json(e) for e in document.get("events", ())),
            int(document.get("dropped", 0)),
        )


@dataclass(frozen=True)
class Aborted:
    """When and why an objective's ``abort`` stopped a target's load early."""

    at: str | None
    reason: str

    def to_json(self) -> Json:
        return {"at": self.at, "reason": self.reason}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Aborted:
        return cls(document.get("at"), str(document.get("reason", "")))


@dataclass(frozen=True)
class RequestWritten:
    """A request template as run.json keeps it: its URL (any password redacted), method,
    the names of its headers (values redacted), the size of its body, and its weight."""

    url: str
    method: str = "GET"
    headers: tuple[str, ...] = ()
    body_bytes: int = 0
    weight: float | None = None

    def to_json(self) -> Json:
        document: Json = {"url": self.url, "method": self.method}
        if self.headers:
            document["headers"] = dict.fromkeys(self.headers, REDACTED)
        if self.body_bytes:
            document["body_bytes"] = self.body_bytes
        if self.weight is not None:
            document["weight"] = self.weight
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RequestWritten:
        weight = document.get("weight")
        return cls(
            str(document.get("url", "")),
            str(document.get("method", "GET")),
            tuple(str(name) for name in document.get("headers") or {}),
            int(document.get("body_bytes", 0)),
            None if weight is None else float(weight),
        )


@dataclass(frozen=True)
class TlsWritten:
    """A target's TLS options as run.json keeps them: whether the server is verified,
    and whether a CA and a client certificate were given (never what they are)."""

    verify: bool = True
    ca: bool = False
    cert: bool = False

    def to_json(self) -> Json:
        return {"verify": self.verify, "ca": self.ca, "cert": self.cert}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> TlsWritten:
        return cls(
            bool(document.get("verify", True)),
            bool(document.get("ca", False)),
            bool(document.get("cert", False)),
        )


@dataclass(frozen=True)
class TargetBlock:
    """One target of a run: what it was sent, where its load ran, how it went.

    ``requests`` and ``tls`` are there for a target given by its requests, not for a
    launched one.
    """

    generators: tuple[GeneratorEnd, ...] = ()
    urls: tuple[str, ...] | None = None
    requests: tuple[RequestWritten, ...] | None = None
    tls: TlsWritten | None = None
    placement: str | None = None  # STRICT_SPREAD or SPREAD
    start: str | None = None
    start_ns: int | None = None
    planned_end: str | None = None
    faults: tuple[FaultMark, ...] = ()
    aborted: Aborted | None = None
    proxies: Mapping[str, ProxyCounts] = field(default_factory=dict)
    steps: tuple[str, ...] | None = None  # a session target's steps' names, by index
    data: DataWritten | None = None  # a session target's test data
    flow: str | None = None  # a session target written in Python: FILE:FUNCTION
    patterns: PatternsWritten | None = None  # a launched target's, when it has any
    dependency_calls: int | None = None  # calls a launched dependency saw for this target

    def with_generator(self, end: GeneratorEnd) -> TargetBlock:
        """This block with generator ``end.worker``'s entry replaced by ``end``."""
        generators = tuple(end if g.worker == end.worker else g for g in self.generators)
        return replace(self, generators=generators)

    def to_json(self) -> Json:
        document: Json = {"generators": [g.to_json() for g in self.generators]}
        if self.urls is not None:
            document["urls"] = list(self.urls)
        if self.requests is not None:
            document["requests"] = [r.to_json() for r in self.requests]
            document["tls"] = None if self.tls is None else self.tls.to_json()
        document |= _absent_left_out(
            {
                "placement": self.placement,
                "start": self.start,
                "start_ns": self.start_ns,
                "planned_end": self.planned_end,
                "faults": [f.to_json() for f in self.faults] or None,
                "aborted": None if self.aborted is None else self.aborted.to_json(),
                "proxies": {n: c.to_json() for n, c in self.proxies.items()} or None,
                "steps": None if self.steps is None else list(self.steps),
                "data": None if self.data is None else self.data.to_json(),
                "flow": self.flow,
                "patterns": None if self.patterns is None else self.patterns.to_json(),
                "dependency_calls": self.dependency_calls,
            }
        )
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> TargetBlock:
        urls, requests, aborted = (document.get(k) for k in ("urls", "requests", "aborted"))
        start_ns, tls = document.get("start_ns"), document.get("tls")
        patterns, calls = document.get("patterns"), document.get("dependency_calls")
        return cls(
            generators=tuple(GeneratorEnd.from_json(g) for g in document.get("generators", ())),
            urls=None if urls is None else tuple(urls),
            requests=None if requests is None else tuple(map(RequestWritten.from_json, requests)),
            tls=None if tls is None else TlsWritten.from_json(tls),
            placement=document.get("placement"),
            start=document.get("start"),
            start_ns=None if start_ns is None else int(start_ns),
            planned_end=document.get("planned_end"),
            faults=tuple(FaultMark.from_json(f) for f in document.get("faults", ())),
            aborted=None if aborted is None else Aborted.from_json(aborted),
            proxies={
                str(n): ProxyCounts.from_json(c) for n, c in document.get("proxies", {}).items()
            },
            steps=None if document.get("steps") is None else tuple(document["steps"]),
            data=None if document.get("data") is None else DataWritten.from_json(document["data"]),
            flow=document.get("flow"),
            patterns=None if patterns is None else PatternsWritten.from_json(patterns),
            dependency_calls=None if calls is None else int(calls),
        )


@dataclass(frozen=True)
class Totals:
    """A target's counts, read back from its shards on disk."""

    requests: int = 0
    ok: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)

    def to_json(self) -> Json:
        return {"requests": self.requests, "ok": self.ok, "errors": dict(self.errors)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Totals:
        return cls(
            int(document.get("requests", 0)),
            int(document.get("ok", 0)),
            _counts(document.get("errors")),
        )


@dataclass(frozen=True)
class RayInfo:
    """The Ray cluster a run ran on."""

    embedded: bool | None = None
    address: str | None = None
    generators: int | None = None
    nodes: int | None = None

    def to_json(self) -> Json:
        return {
            "embedded": self.embedded,
            "address": self.address,
            "generators": self.generators,
            "nodes": self.nodes,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> RayInfo:
        return cls(*(document.get(k) for k in ("embedded", "address", "generators", "nodes")))


@dataclass(frozen=True)
class Versions:
    """What wrote a run: blastradius, Ray, pyarrow, Python, and the row schema."""

    blastradius: str = "unknown"
    ray: str = "unknown"
    pyarrow: str = "unknown"
    python: str = "unknown"
    schema: str = "unknown"

    NAMES: ClassVar[tuple[str, ...]] = ("blastradius", "ray", "pyarrow", "python", "schema")

    def to_json(self) -> Json:
        return {name: getattr(self, name) for name in self.NAMES}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Versions:
        return cls(*(str(document.get(name, "unknown")) for name in cls.NAMES))


@dataclass(frozen=True)
class ServicesInfo:
    """The services a run launched: the node they ran on and each one's URL."""

    node: str | None = None  # None: the run launched none
    urls: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> Json:
        return {} if self.node is None else {"node": self.node, "urls": dict(self.urls)}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> ServicesInfo:
        return cls(document.get("node"), dict(document.get("urls", {})))


def _known(name: str) -> bool:
    if name.startswith(ERROR_PREFIX):
        return name[len(ERROR_PREFIX) :] in ERROR_KINDS[1:]
    return name in AT_LEAST or name in LATENCY or name in SESSION


@dataclass(frozen=True)
class Objectives:
    """Thresholds by objective name (``p99``: ms; ``errors.timeout``: a share), an
    optional window (ns) in which the windowed ones must hold too, and whether the run
    stops its load once one can no longer be met."""

    thresholds: tuple[tuple[str, float], ...] = ()
    window_ns: int | None = None
    abort: bool | None = None  # None: not given (a target's then takes the scenario's)

    def __post_init__(self) -> None:
        for name, value in self.thresholds:
            if not _known(name):
                raise ValueError(f"{name}: not an objective")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name}: must be a finite number >= 0 (got {value!r})")
            if (name == "availability" or name.startswith(ERROR_PREFIX)) and value > 1:
                raise ValueError(f"{name}: a share, from 0 to 1 (got {value!r})")
        if self.window_ns is not None and self.window_ns <= 0:
            raise ValueError("window: must be positive")

    def get(self, name: str) -> float | None:
        """The threshold of ``name``, or None."""
        return dict(self.thresholds).get(name)

    def over(self, base: Objectives) -> Objectives:
        """These objectives, with ``base``'s for every key not given here (a target's
        ``slo:`` over the scenario's). ``errors`` is one key: a target's replaces all
        of the scenario's error shares."""
        mine = dict(self.thresholds)
        errors_given = any(name.startswith(ERROR_PREFIX) for name in mine)
        merged = {
            name: value
            for name, value in base.thresholds
            if not (errors_given and name.startswith(ERROR_PREFIX))
        }
        merged.update(mine)
        return Objectives(
            tuple(merged.items()),
            self.window_ns if self.window_ns is not None else base.window_ns,
            self.abort if self.abort is not None else base.abort,
        )

    def to_json(self) -> Json:
        """As run.json keeps them (``Objectives.from_json`` reads it back)."""
        document: Json = dict(self.thresholds)
        if self.window_ns is not None:
            document["window_ns"] = self.window_ns
        if self.abort:
            document["abort"] = True
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Objectives:
        """What ``to_json`` wrote."""
        thresholds = tuple(
            (name, float(value))
            for name, value in document.items()
            if name not in ("window_ns", "abort")
        )
        return cls(thresholds, document.get("window_ns"), document.get("abort"))


def effective(
    names: list[str], base: Objectives | None, own: Mapping[str, Objectives]
) -> dict[str, Objectives]:
    """Each named target's objectives: its own over the common ones (none: left out)."""
    result = {}
    for name in names:
        mine = own.get(name)
        if mine is not None and base is not None:
            result[name] = mine.over(base)
        elif mine is not None:
            result[name] = mine
        elif base is not None:
            result[name] = base
    return result


@dataclass(frozen=True)
class RunRecord:
    """A whole ``run.json``.

    ``objectives`` are per target; ``services`` is None until the run started its
    services, ``totals`` until the run ended.
    """

    run_id: str
    status: RunStatus = RunStatus.RUNNING
    scenario: Mapping[str, Any] = field(default_factory=dict)
    started: str | None = None
    ended: str | None = None
    ray: RayInfo = field(default_factory=RayInfo)
    versions: Versions = field(default_factory=Versions)
    targets: Mapping[str, TargetBlock] = field(default_factory=dict)
    objectives: Mapping[str, Objectives] = field(default_factory=dict)
    services: ServicesInfo | None = None
    totals: Mapping[str, Totals] | None = None
    error: str | None = None
    format: int = FORMAT  # as the file said (0: written before formats were numbered)

    @property
    def finished(self) -> bool:
        """Whether the run ended as it should (``completed``)."""
        return self.status == RunStatus.COMPLETED

    def target(self, name: str) -> TargetBlock:
        """A target's block (an empty one when the run never got to it)."""
        return self.targets.get(name) or TargetBlock()

    def with_target(self, name: str, block: TargetBlock) -> RunRecord:
        """This record with target ``name``'s block replaced (or added, last)."""
        return replace(self, targets={**self.targets, name: block})

    def load_starts(self) -> dict[str, int]:
        """Each target's load start (ns), for the targets whose load started."""
        return {
            name: block.start_ns
            for name, block in self.targets.items()
            if block.start_ns is not None
        }

    def to_json(self) -> Json:
        document: Json = {
            "format": self.format,
            "run_id": self.run_id,
            "status": self.status,
            "scenario": dict(self.scenario),
            "started": self.started,
            "ended": self.ended,
            "ray": self.ray.to_json(),
            "versions": self.versions.to_json(),
            "targets": {name: block.to_json() for name, block in self.targets.items()},
        }
        if self.objectives:
            document["objectives"] = {name: o.to_json() for name, o in self.objectives.items()}
        if self.services is not None:
            document["services"] = self.services.to_json()
        if self.totals is not None:
            document["totals"] = {name: t.to_json() for name, t in self.totals.items()}
        if self.error is not None:
            document["error"] = self.error
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any], run_id: str = "") -> RunRecord:
        """Read a run.json (``run_id``: the name to use if it has none); ``ValueError``
        for a format newer than this blastradius reads."""
        written = int(document.get("format", 0))
        if written > FORMAT:
            raise ValueError(
                f"run.json format {written} is newer than this blastradius reads "
                f"(up to {FORMAT}): upgrade blastradius"
            )
        services, totals = document.get("services"), document.get("totals")
        return cls(
            run_id=str(document.get("run_id") or run_id),
            status=RunStatus(document.get("status", RunStatus.RUNNING)),
            scenario=document.get("scenario") or {},
            started=document.get("started"),
            ended=document.get("ended"),
            ray=RayInfo.from_json(document.get("ray") or {}),
            versions=Versions.from_json(document.get("versions") or {}),
            targets={
                str(name): TargetBlock.from_json(block)
                for name, block in (document.get("targets") or {}).items()
            },
            objectives={
                str(n): Objectives.from_json(o)
                for n, o in (document.get("objectives") or {}).items()
            },
            services=None if services is None else ServicesInfo.from_json(services),
            totals=None
            if totals is None
            else {str(n): Totals.from_json(t) for n, t in totals.items()},
            error=document.get("error"),
            format=written,
        )
