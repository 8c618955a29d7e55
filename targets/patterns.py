"""The resilience patterns a reference service can be given: their options, validated.

A launched target's keys (and ``serve blocking|async --patterns DOC``)::

    bulkhead: {per_endpoint: 10}          # at most 10 calls in flight to each endpoint
    breaker: {failures: 50%, window: 5s, open_for: 2s, probes: 3, min_calls: 10}
    limit: {adaptive: aimd, initial: 20, min: 1, max: 500, backoff: 0.9, timeout: 1s}
    limit: {adaptive: gradient, initial: 20, min: 1, max: 500, tolerance: 2, smoothing: 0.2}
    shed: {queue_timeout: 100ms, lifo_when_busy: true}
    retry: {attempts: 3, budget: 10%, window: 10s, backoff: 0s}   # no budget: naive
    deadline: propagate

Durations take units (a bare number is seconds); a share is ``50%`` or ``0.5``. The
state machines that apply them are in ``targets/guards.py``; this module only reads
and writes the options (to JSON, for a launched service's ``--patterns``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from blastradius.targets.fields import Fields, kind_of, number, read_duration, whole
from blastradius.targets.spec import format_duration_ns
from blastradius.targets.validation import FieldError

PATTERN_KEYS = ("bulkhead", "breaker", "limit", "shed", "retry", "deadline")
ADAPTIVE = ("aimd", "gradient")
DEADLINE_HEADER = "X-Request-Deadline"  # epoch milliseconds: when the caller gives up


@dataclass(frozen=True)
class Bulkhead:
    """At most ``per_endpoint`` calls in flight to each dependency endpoint."""

    per_endpoint: int

    def __post_init__(self) -> None:
        _at_least("per_endpoint", self.per_endpoint, 1)


@dataclass(frozen=True)
class Breaker:
    """Per endpoint: open once ``failures`` of the calls that ended in the last ``window``
    failed (and at least ``min_calls`` did); refuse every call for ``open_for``; then let
    ``probes`` calls through, and close once they all succeed (any failure reopens)."""

    failures: float = 0.5
    window_ns: int = 5_000_000_000
    open_for_ns: int = 2_000_000_000
    probes: int = 3
    min_calls: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.failures <= 1:
            raise FieldError("failures", f"a share above 0, at most 1 (got {self.failures!r})")
        _positive("window", self.window_ns)
        _positive("open_for", self.open_for_ns)
        _at_least("probes", self.probes, 1)
        _at_least("min_calls", self.min_calls, 1)


@dataclass(frozen=True)
class Limit:
    """A concurrency limit on the whole service that adapts to the latency of its calls.

    ``aimd``: one more after a call that succeeded with the service at least half busy,
    times ``backoff`` after one that failed or took over ``timeout``. ``gradient``
    (Netflix's Gradient2): towards ``limit * min(1, tolerance * long / short latency)``
    plus a queue of ``sqrt(limit)``, by ``smoothing`` per call.
    """

    adaptive: str
    initial: int = 20
    min: int = 1
    max: int = 1000
    backoff: float = 0.9  # aimd
    timeout_ns: int = 1_000_000_000  # aimd: a call slower than this counts as a drop
    tolerance: float = 2.0  # gradient
    smoothing: float = 0.2  # gradient

    def __post_init__(self) -> None:
        if self.adaptive not in ADAPTIVE:
            raise FieldError("adaptive", f"{self.adaptive!r} is not one of {', '.join(ADAPTIVE)}")
        _at_least("min", self.min, 1)
        if self.max < self.min:
            raise FieldError("max", f"must be at least min ({self.min}), got {self.max}")
        if not self.min <= self.initial <= self.max:
            raise FieldError("initial", f"must be from min to max, got {self.initial}")
        if not 0 < self.backoff < 1:
            raise FieldError("backoff", f"must be above 0 and below 1 (got {self.backoff!r})")
        _positive("timeout", self.timeout_ns)
        if not self.tolerance >= 1:
            raise FieldError("tolerance", f"must be at least 1 (got {self.tolerance!r})")
        if not 0 < self.smoothing <= 1:
            raise FieldError("smoothing", f"must be above 0, at most 1 (got {self.smoothing!r})")


@dataclass(frozen=True)
class Shed:
    """Refuse, before any work, a request that waited over ``queue_timeout`` in the
    service's queue; with ``lifo_when_busy``, serve the newest first while a queue
    stands (it has not been empty for a ``queue_timeout``): Facebook's adaptive LIFO."""

    queue_timeout_ns: int
    lifo_when_busy: bool = False

    def __post_init__(self) -> None:
        _positive("queue_timeout", self.queue_timeout_ns)


@dataclass(frozen=True)
class Retry:
    """Up to ``attempts`` calls per request while they fail; with a ``budget``, retries
    are at most that share of the requests of the last ``window`` (Finagle's
    RetryBudget); without, every failure is retried (the naive case). ``backoff``: the
    first wait before a retry, doubled each time, with full jitter (0: at once)."""

    attempts: int
    budget: float | None = None
    window_ns: int = 10_000_000_000
    backoff_ns: int = 0

    def __post_init__(self) -> None:
        _at_least("attempts", self.attempts, 1)
        if self.budget is not None and not 0 < self.budget <= 1:
            raise FieldError("budget", f"a share above 0, at most 1 (got {self.budget!r})")
        _positive("window", self.window_ns)
        if self.backoff_ns < 0:
            raise FieldError("backoff", "must not be negative")


@dataclass(frozen=True)
class Patterns:
    """The patterns a service applies to each request (None: not applied)."""

    bulkhead: Bulkhead | None = None
    breaker: Breaker | None = None
    limit: Limit | None = None
    shed: Shed | None = None
    retry: Retry | None = None
    deadline: bool = False  # honour the caller's deadline header

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))

    def names(self) -> tuple[str, ...]:
        """The patterns given, in ``PATTERN_KEYS`` order."""
        return tuple(key for key in PATTERN_KEYS if getattr(self, key))

    def to_json(self) -> dict[str, Any]:
        """The options as a document ``parse_patterns`` reads back."""
        document: dict[str, Any] = {}
        for key in PATTERN_KEYS:
            value = getattr(self, key)
            if key == "deadline":
                if value:
                    document[key] = "propagate"
            elif value is not None:
                document[key] = {
                    _KEY_OF.get(k, k): format_duration_ns(v) if k in _KEY_OF else v
                    for k, v in asdict(value).items()
                    if v is not None
                }
        return document

    def about(self) -> str:
        """The patterns in a few words, for the run's log."""
        return ", ".join(self.names())


# The document keys of the fields kept in nanoseconds.
_KEY_OF = {"window_ns": "window", "open_for_ns": "open_for", "timeout_ns": "timeout"}
_KEY_OF |= {"queue_timeout_ns": "queue_timeout", "backoff_ns": "backoff"}


def _at_least(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise FieldError(key, f"must be at least {minimum} (got {value})")


def _positive(key: str, ns: int) -> None:
    if ns <= 0:
        raise FieldError(key, "must be positive")


def _share(value: object, path: str) -> float:
    """``50%`` or ``0.5``: a share above 0, at most 1."""
    given = value
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            value = float(value.strip()[:-1]) / 100
        except ValueError:
            raise FieldError(path, f"{given!r} is not a percentage") from None
    share = number(value, path)
    if share > 1:
        raise FieldError(path, f"a share above 0, at most 1 (got {given!r})")
    return share


def _duration(fields: Fields, key: str, default: int, positive: bool = True) -> int:
    value = fields.get(key)
    if value is None:
        return default
    return read_duration(value, fields.at(key), positive=positive)


def _flag(fields: Fields, key: str) -> bool:
    value = fields.get(key, False)
    if not isinstance(value, bool):
        raise FieldError(fields.at(key), f"expected true or false, got {kind_of(value)}")
    return value


def _built(path: str, build) -> Any:
    """``build()``, its ``FieldError`` placed under ``path``."""
    try:
        return build()
    except FieldError as exc:
        raise exc.within(path) from None


def _bulkhead(fields: Fields) -> Bulkhead:
    per_endpoint = whole(fields.get("per_endpoint"), fields.at("per_endpoint"))
    fields.done()
    return _built(fields.path, lambda: Bulkhead(per_endpoint))


def _breaker(fields: Fields) -> Breaker:
    d = Breaker()
    failures = fields.get("failures")
    share = d.failures if failures is None else _share(failures, fields.at("failures"))
    window = _duration(fields, "window", d.window_ns)
    open_for = _duration(fields, "open_for", d.open_for_ns)
    probes = whole(fields.get("probes", d.probes), fields.at("probes"))
    min_calls = whole(fields.get("min_calls", d.min_calls), fields.at("min_calls"))
    fields.done()
    return _built(fields.path, lambda: Breaker(share, window, open_for, probes, min_calls))


def _limit(fields: Fields) -> Limit:
    adaptive = fields.get("adaptive")
    if adaptive not in ADAPTIVE:
        raise FieldError(fields.at("adaptive"), f"{adaptive!r} is not one of {', '.join(ADAPTIVE)}")
    d = Limit(adaptive)
    sizes = {
        key: whole(fields.get(key, getattr(d, key)), fields.at(key))
        for key in ("initial", "min", "max")
    }
    backoff = number(fields.get("backoff", d.backoff), fields.at("backoff"))
    timeout = _duration(fields, "timeout", d.timeout_ns)
    tolerance = number(fields.get("tolerance", d.tolerance), fields.at("tolerance"))
    smoothing = number(fields.get("smoothing", d.smoothing), fields.at("smoothing"))
    fields.done()
    return _built(
        fields.path,
        lambda: Limit(adaptive, **sizes, backoff=backoff, timeout_ns=timeout,
                      tolerance=tolerance, smoothing=smoothing),
    )  # fmt: skip


def _shed(fields: Fields) -> Shed:
    if fields.get("queue_timeout") is None:
        raise FieldError(fields.at("queue_timeout"), "missing")
    queue_timeout = _duration(fields, "queue_timeout", 0)
    lifo = _flag(fields, "lifo_when_busy")
    fields.done()
    return _built(fields.path, lambda: Shed(queue_timeout, lifo))


def _retry(fields: Fields) -> Retry:
    attempts = whole(fields.get("attempts"), fields.at("attempts"))
    budget = fields.get("budget")
    budget = None if budget is None else _share(budget, fields.at("budget"))
    window = _duration(fields, "window", Retry(1).window_ns)
    backoff = _duration(fields, "backoff", 0, positive=False)
    fields.done()
    return _built(fields.path, lambda: Retry(attempts, budget, window, backoff))


_READERS = {
    "bulkhead": _bulkhead,
    "breaker": _breaker,
    "limit": _limit,
    "shed": _shed,
    "retry": _retry,
}


def read_patterns(fields: Fields) -> Patterns:
    """The pattern keys of a target's (or a service's) document: ``fields`` has them
    among its others, which are left unread."""
    found: dict[str, Any] = {}
    for key, read in _READERS.items():
        value = fields.get(key)
        if value is not None:
            found[key] = read(Fields(value, fields.at(key)))
    return Patterns(**found, deadline=read_deadline(fields))


def read_deadline(fields: Fields) -> bool:
    """``deadline: propagate`` among a target's keys (any target takes it); whether given."""
    value = fields.get("deadline")
    if value is not None and value != "propagate":
        raise FieldError(fields.at("deadline"), f"{value!r}: the one choice is propagate")
    return value is not None


def parse_patterns(value: object, path: str = "") -> Patterns:
    """A document of pattern keys alone (``serve ... --patterns``, or ``to_json``'s)."""
    if isinstance(value, Mapping) and not value:
        return Patterns()
    fields = Fields(value, path, document="patterns")
    patterns = read_patterns(fields)
    fields.done()
    return patterns
