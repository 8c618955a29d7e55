"""A request's way through a reference service's patterns, around its dependency calls.

Both services run the same steps, the blocking one on its thread and the async one on
its loop::

    admission = guards.admit(endpoint, deadline)   # bulkhead, limit, a deadline passed
    attempt = guards.attempt(admission)            # breaker, the call's timeout
    ... the call ...
    guards.attempted(admission, attempt, status)   # the breaker learns
    wait = guards.again(admission, status)         # retry (budget, deadline), or None
    guards.finish(admission, status)               # places given back; the limit learns

Whatever a pattern refuses is answered at once: 503 (bulkhead, breaker, limit, shed)
or 504 (the caller's deadline has passed: the service does not call on its behalf).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from blastradius.targets.guards import (
    AdaptiveLimit,
    Breakers,
    BulkheadGate,
    Clock,
    Events,
    Line,
    RetryBudget,
)
from blastradius.targets.patterns import Patterns

Answer = tuple[int, str]  # a status and its text
REFUSED = 503
RETRIED = (502, 504)  # the dependency failed or did not answer in time
GAVE_UP = (504, "the caller's deadline has passed\n")


@dataclass
class Admission:
    """One request let in: what it holds, and its attempts so far."""

    endpoint: int
    deadline_ns: int | None
    started_ns: int | None = None  # set when the limit let it in
    attempts: int = 0


@dataclass(frozen=True)
class Attempt:
    """One call to the dependency: its breaker permit and its timeout (None: none)."""

    permit: int | None
    timeout_s: float | None
    cut: bool  # the timeout is the caller's deadline, nearer than the service's own


class Guards:
    """The patterns of one service, with their state and events."""

    def __init__(
        self,
        patterns: Patterns,
        timeout_s: float | None,
        clock: Clock = time.time_ns,
        rng: random.Random | None = None,
    ) -> None:
        self.patterns, self.timeout_s = patterns, timeout_s
        self.events = Events(clock)
        self.rng = rng or random.Random()
        p = patterns
        self.bulkhead = None if p.bulkhead is None else BulkheadGate(p.bulkhead, self.events)
        self.breakers = None if p.breaker is None else Breakers(p.breaker, self.events)
        self.limit = None if p.limit is None else AdaptiveLimit(p.limit, self.events)
        self.line: Line[Any] | None = None if p.shed is None else Line(p.shed, self.events)
        self.budget = None if p.retry is None else RetryBudget(p.retry, self.events)

    def admit(self, endpoint: int, deadline_ns: int | None) -> Admission | Answer:
        """Let a request for ``endpoint`` in, or its answer when a pattern refuses it."""
        if deadline_ns is not None and self.patterns.deadline:
            if self.events.clock() >= deadline_ns:
                self.events.count("deadline", "expired")
                return GAVE_UP
        else:
            deadline_ns = None
        if self.bulkhead is not None and not self.bulkhead.enter(endpoint):
            return REFUSED, f"bulkhead: endpoint {endpoint} has every place taken\n"
        admission = Admission(endpoint, deadline_ns)
        if self.limit is not None:
            admission.started_ns = self.limit.enter()
            if admission.started_ns is None:
                if self.bulkhead is not None:
                    self.bulkhead.leave(endpoint)
                return REFUSED, f"over the concurrency limit ({int(self.limit.limit)})\n"
        if self.budget is not None:
            self.budget.request()
        return admission

    def attempt(self, admission: Admission) -> Attempt | Answer:
        """The next call's permit and timeout, or the answer when none may be made."""
        timeout_s, cut = self.timeout_s, False
        if admission.deadline_ns is not None:
            left_s = (admission.deadline_ns - self.events.clock()) / 1e9
            if left_s <= 0:
                self.events.count("deadline", "expired")
                return GAVE_UP
            if timeout_s is None or left_s < timeout_s:
                timeout_s, cut = left_s, True
        permit = None
        if self.breakers is not None:
            permit = self.breakers[admission.endpoint].admit()
            if permit is None:
                return REFUSED, f"breaker: endpoint {admission.endpoint} is open\n"
        admission.attempts += 1
        return Attempt(permit, timeout_s, cut)

    def attempted(self, admission: Admission, attempt: Attempt, status: int) -> None:
        """A call ended with ``status`` (the service's mapping of the dependency's)."""
        if attempt.permit is not None and self.breakers is not None:
            self.breakers[admission.endpoint].record(attempt.permit, status == 200)
        if attempt.cut and status == 504:
            self.events.count("deadline", "cut")

    def again(self, admission: Admission, status: int) -> float | None:
        """Seconds to wait before trying again, or None to answer ``status`` now."""
        retry = self.patterns.retry
        if retry is None or admission.attempts >= retry.attempts or status not in RETRIED:
            return None
        deadline = admission.deadline_ns
        if deadline is not None and self.events.clock() >= deadline:
            return None
        assert self.budget is not None  # made with the retry pattern
        if not self.budget.allow():
            return None
        ceiling = retry.backoff_ns * 2 ** (admission.attempts - 1) / 1e9
        return self.rng.uniform(0, ceiling) if ceiling else 0.0

    def finish(self, admission: Admission, status: int | None) -> None:
        """The request is answered (``status``; None: it broke): give back its places."""
        if self.bulkhead is not None:
            self.bulkhead.leave(admission.endpoint)
        if self.limit is not None and admission.started_ns is not None:
            self.limit.leave(admission.started_ns, status == 200)

    def stats(self) -> dict[str, int]:
        """The patterns' counts, and the limit where there is one (``/stats``)."""
        counts = self.events.totals()
        if self.limit is not None:
            counts["limit.current"] = int(self.limit.limit)
        return counts
