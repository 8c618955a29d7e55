"""The resilience patterns' state machines, each on an injected clock (epoch ns).

Pure of I/O and thread-safe (one lock each, never held while waiting), so the blocking
service's threads and the async service's loop share them. ``Events`` records what they
did: every action counted by name (``breaker.opened``), and time-stamped events, a state
change each (a breaker opening, the limit moving, LIFO switched on) or an episode of the
same action repeated less than ``GAP_NS`` apart (requests shed, with their count).
"""

from __future__ import annotations

import math
import threading
from collections import Counter, deque
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

from blastradius.targets.patterns import Breaker, Bulkhead, Limit, Retry, Shed

Clock = Callable[[], int]  # epoch ns
T = TypeVar("T")
GAP_NS = 1_000_000_000  # the same action this close to the last one extends its episode
MAX_EVENTS = 10_000  # events kept; beyond, counted in ``dropped`` (the counts stay exact)
LIMIT_EVERY_NS = 100_000_000  # the limit's moves are events at most this often
_BUCKETS = 10  # a sliding window is this many buckets


class Events:
    """What the patterns did: counts by name, and time-stamped events."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self.dropped = 0
        self._open: dict[tuple, dict[str, Any]] = {}  # the latest episode of each action

    def mark(
        self, pattern: str, event: str, endpoint: int | None = None, value: Any = None
    ) -> None:
        """A state change: an event of its own."""
        with self._lock:
            self._add(_event(self.clock(), pattern, event, endpoint, value))

    def count(self, pattern: str, event: str, endpoint: int | None = None) -> None:
        """An action: counted, and part of an episode of the same action."""
        now = self.clock()
        key = (pattern, event, endpoint)
        with self._lock:
            episode = self._open.get(key)
            if episode is not None and now - episode["until_ns"] <= GAP_NS:
                episode["count"] += 1
                episode["until_ns"] = now
                self.counts[f"{pattern}.{event}"] += 1
                return
            episode = _event(now, pattern, event, endpoint, None)
            episode["until_ns"] = now
            if self._add(episode):
                self._open[key] = episode

    def _add(self, event: dict[str, Any]) -> bool:
        self.counts[f"{event['pattern']}.{event['event']}"] += 1
        if len(self.events) >= MAX_EVENTS:
            self.dropped += event["count"]
            return False
        self.events.append(event)
        return True

    def totals(self) -> dict[str, int]:
        """The counts so far, by ``pattern.event``."""
        with self._lock:
            return dict(self.counts)

    def snapshot(self) -> dict[str, Any]:
        """The counts and the events so far (copies), as ``/stats`` and ``/events`` give them."""
        with self._lock:
            return {
                "counts": dict(self.counts),
                "events": [dict(e) for e in self.events],
                "dropped": self.dropped,
            }


def _event(
    at_ns: int, pattern: str, event: str, endpoint: int | None, value: Any
) -> dict[str, Any]:
    found: dict[str, Any] = {"at_ns": at_ns, "pattern": pattern, "event": event, "count": 1}
    if endpoint is not None:
        found["endpoint"] = endpoint
    if value is not None:
        found["value"] = value
    return found


class BulkheadGate:
    """At most ``per_endpoint`` calls in flight to each endpoint; the rest refused."""

    def __init__(self, config: Bulkhead, events: Events) -> None:
        self.config, self.events = config, events
        self._lock = threading.Lock()
        self.in_flight: Counter[int] = Counter()

    def enter(self, endpoint: int) -> bool:
        """Take a place for a call to ``endpoint``; False (counted) when none is free."""
        with self._lock:
            if self.in_flight[endpoint] >= self.config.per_endpoint:
                full = True
            else:
                self.in_flight[endpoint] += 1
                full = False
        if full:
            self.events.count("bulkhead", "rejected", endpoint)
        return not full

    def leave(self, endpoint: int) -> None:
        """Give back the place ``enter`` took."""
        with self._lock:
            self.in_flight[endpoint] -= 1


class _Window:
    """Calls and failures that ended in the last ``window_ns``, in ``_BUCKETS`` buckets."""

    def __init__(self, window_ns: int) -> None:
        self.bucket_ns = max(1, window_ns // _BUCKETS)
        self.buckets: deque[list[int]] = deque()  # [bucket index, calls, failures]

    def add(self, now: int, failed: bool) -> tuple[int, int]:
        """Count one call; the calls and failures in the window now."""
        index = now // self.bucket_ns
        while self.buckets and self.buckets[0][0] <= index - _BUCKETS:
            self.buckets.popleft()
        if not self.buckets or self.buckets[-1][0] != index:
            self.buckets.append([index, 0, 0])
        self.buckets[-1][1] += 1
        self.buckets[-1][2] += failed
        return sum(b[1] for b in self.buckets), sum(b[2] for b in self.buckets)

    def clear(self) -> None:
        self.buckets.clear()


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    """One endpoint's breaker: closed, open, half-open (``patterns.Breaker``).

    ``admit`` gives a permit, or None when the call is refused; ``record`` takes the
    permit back with the call's outcome. A permit from before the last change of state
    is ignored: a slow call that began while closed says nothing of the half-open state.
    """

    def __init__(self, config: Breaker, events: Events, endpoint: int) -> None:
        self.config, self.events, self.endpoint = config, events, endpoint
        self._lock = threading.Lock()
        self.state = CLOSED
        self.generation = 0
        self._window = _Window(config.window_ns)
        self._opened_at = 0
        self._probes_out = self._probes_ok = 0

    def admit(self) -> int | None:
        """A permit for one call, or None (counted) while open or with every probe out."""
        with self._lock:
            now = self.events.clock()
            if self.state == OPEN and now - self._opened_at >= self.config.open_for_ns:
                self._change(HALF_OPEN)
            if self.state == CLOSED or (
                self.state == HALF_OPEN and self._probes_out < self.config.probes
            ):
                self._probes_out += self.state == HALF_OPEN
                return self.generation
        self.events.count("breaker", "rejected", self.endpoint)
        return None

    def record(self, permit: int, ok: bool) -> None:
        """The outcome of a call admitted with ``permit``."""
        with self._lock:
            if permit != self.generation:
                return
            now = self.events.clock()
            if self.state == HALF_OPEN:
                if not ok:
                    self._open(now)
                else:
                    self._probes_ok += 1
                    if self._probes_ok >= self.config.probes:
                        self._change(CLOSED)
                return
            calls, failures = self._window.add(now, not ok)
            if calls >= self.config.min_calls and failures >= self.config.failures * calls:
                self._open(now)

    def _open(self, now: int) -> None:
        self._opened_at = now
        self._change(OPEN)

    def _change(self, state: str) -> None:
        self.state = state
        self.generation += 1
        self._window.clear()
        self._probes_out = self._probes_ok = 0
        self.events.mark("breaker", "opened" if state == OPEN else state, self.endpoint)


class Breakers:
    """A breaker per endpoint, made when first called."""

    def __init__(self, config: Breaker, events: Events) -> None:
        self.config, self.events = config, events
        self._lock = threading.Lock()
        self.each: dict[int, CircuitBreaker] = {}

    def __getitem__(self, endpoint: int) -> CircuitBreaker:
        with self._lock:
            breaker = self.each.get(endpoint)
            if breaker is None:
                breaker = self.each[endpoint] = CircuitBreaker(self.config, self.events, endpoint)
            return breaker


class AdaptiveLimit:
    """A concurrency limit on the service that moves with its calls' latency
    (``patterns.Limit``: AIMD, or Netflix's Gradient2)."""

    LONG_SAMPLES = 600  # the long-term latency is an average over about this many calls

    def __init__(self, config: Limit, events: Events) -> None:
        self.config, self.events = config, events
        self._lock = threading.Lock()
        self.limit = float(config.initial)
        self.in_flight = 0
        self.long_ns: float | None = None
        self._shown = config.initial
        self._shown_at: int | None = None

    def enter(self) -> int | None:
        """A request's start (epoch ns) if the limit lets it in; None (counted) if not."""
        with self._lock:
            if self.in_flight < int(self.limit):
                self.in_flight += 1
                return self.events.clock()
        self.events.count("limit", "rejected")
        return None

    def leave(self, started_ns: int, ok: bool) -> None:
        """A request let in at ``started_ns`` ended, successfully or not; the limit moves."""
        with self._lock:
            now = self.events.clock()
            latency = max(1, now - started_ns)
            if self.config.adaptive == "aimd":
                self._aimd(latency, ok)
            else:
                self._gradient(latency)
            self.in_flight -= 1
            self._show(now)

    def _aimd(self, latency: int, ok: bool) -> None:
        config = self.config
        if not ok or latency > config.timeout_ns:
            self.limit = max(config.min, self.limit * config.backoff)
        elif self.in_flight * 2 >= self.limit:
            self.limit = min(config.max, self.limit + 1)

    def _gradient(self, latency: int) -> None:
        config = self.config
        if self.long_ns is None:
            self.long_ns = float(latency)
        else:
            self.long_ns += (latency - self.long_ns) / self.LONG_SAMPLES
        if self.long_ns / latency > 2:  # the long term recovers from a slow period faster
            self.long_ns *= 0.95
        if self.in_flight < self.limit / 2:  # the service is not what limits: learn nothing
            return
        gradient = max(0.5, min(1.0, config.tolerance * self.long_ns / latency))
        target = self.limit * gradient + math.sqrt(self.limit)  # and a queue's allowance
        limit = self.limit * (1 - config.smoothing) + target * config.smoothing
        self.limit = min(config.max, max(config.min, limit))

    def _show(self, now: int) -> None:
        shown = int(self.limit)
        if shown == self._shown:
            return
        if self._shown_at is not None and now - self._shown_at < LIMIT_EVERY_NS:
            return
        self._shown, self._shown_at = shown, now
        self.events.mark("limit", "changed", value=shown)


class Line(Generic[T]):
    """Requests waiting for the service (``patterns.Shed``): first in, first out, or
    last in, first out while a queue stands (with ``lifo_when_busy``); one that waited
    over ``queue_timeout`` is to be refused (``too_long``)."""

    def __init__(self, config: Shed, events: Events) -> None:
        self.config, self.events = config, events
        self._lock = threading.Lock()
        self._items: deque[tuple[T, int]] = deque()
        self._since: int | None = None  # when the line last stopped being empty
        self.lifo = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: T) -> None:
        """Join the line."""
        with self._lock:
            now = self.events.clock()
            if not self._items:
                self._since = now
            self._items.append((item, now))

    def remove(self, item: T) -> bool:
        """Leave the line without being taken (a waiter that gave up); whether it was in."""
        with self._lock:
            for index, entry in enumerate(self._items):
                if entry[0] is item:  # by itself: deque.remove would take an equal one
                    del self._items[index]
                    if not self._items:
                        self._since = None
                    return True
        return False

    def take(self) -> tuple[T, int] | None:
        """The next in line and how long it waited (ns); None if the line is empty."""
        with self._lock:
            if not self._items:
                return None
            now = self.events.clock()
            busy = self._since is not None and now - self._since >= self.config.queue_timeout_ns
            lifo = self.config.lifo_when_busy and busy
            if lifo != self.lifo:
                self.lifo = lifo
                self.events.mark("shed", "lifo" if lifo else "fifo")
            item, joined = self._items.pop() if lifo else self._items.popleft()
            if not self._items:
                self._since = None
        return item, now - joined

    def too_long(self, waited_ns: int) -> bool:
        """Whether a request that waited ``waited_ns`` is to be refused (then counted)."""
        if waited_ns <= self.config.queue_timeout_ns:
            return False
        self.refuse()
        return True

    def refuse(self) -> None:
        """Count a request refused for waiting too long."""
        self.events.count("shed", "shed")


class RetryBudget:
    """Whether a failed call may be tried again (``patterns.Retry``): always, without a
    budget; with one, while retries stay at most ``budget`` of the requests that began
    in the last ``window`` (Finagle's RetryBudget, without its reserve)."""

    def __init__(self, config: Retry, events: Events) -> None:
        self.config, self.events = config, events
        self._lock = threading.Lock()
        self.bucket_ns = max(1, config.window_ns // _BUCKETS)
        self._buckets: deque[list[int]] = deque()  # [bucket index, requests, retries]

    def _now_bucket(self) -> list[int]:
        index = self.events.clock() // self.bucket_ns
        while self._buckets and self._buckets[0][0] <= index - _BUCKETS:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != index:
            self._buckets.append([index, 0, 0])
        return self._buckets[-1]

    def request(self) -> None:
        """A request began: it adds ``budget`` of a retry to the budget."""
        with self._lock:
            self._now_bucket()[1] += 1

    def allow(self) -> bool:
        """Whether to retry now; a retry allowed is taken from the budget (both counted)."""
        with self._lock:
            bucket = self._now_bucket()
            budget = self.config.budget
            retries = sum(b[2] for b in self._buckets)
            allowed = budget is None or retries + 1 <= budget * sum(b[1] for b in self._buckets)
            bucket[2] += allowed
        self.events.count("retry", "retried" if allowed else "denied")
        return allowed


def parse_deadline(header: str | None) -> int | None:
    """The caller's deadline (epoch ns) from a ``patterns.DEADLINE_HEADER`` value in epoch
    milliseconds; None when absent or not a number (then there is no deadline)."""
    if header is None:
        return None
    try:
        ms = Decimal(header.strip())
    except InvalidOperation:
        return None
    if not ms.is_finite() or ms <= 0:
        return None
    return int(ms * 1_000_000)
