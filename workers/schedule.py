"""Open-loop schedules: intended send times as a pure function of the plan.

A schedule is a list of stages, each a duration with a rate at its start and
at its end (equal: a step; different: a linear ramp), cut short by an
optional total request count. Intended send times are the inverse of the
cumulative rate Lambda(t) = integral of rate:

- constant arrivals: request i is due when Lambda(t) = i (evenly spaced at a
  steady rate, so the first request is due at t = 0);
- Poisson arrivals: request i is due when Lambda(t) = E_1 + ... + E_(i+1),
  the E_k independent Exp(1) draws from a seeded generator (time rescaling:
  a Poisson process of rate r(t), reproducible from the seed).

Times come out in chunks (bounded memory however long the run), as int64
nanoseconds from the schedule's start. ``share`` splits one schedule over N
generators by interleaving: generator k sends requests k, k+N, k+2N, ..., so
together they send exactly the planned times.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.random  # numpy loads it lazily: at the first draw, on the sending loop

ARRIVALS = ("constant", "poisson")
CHUNK = 65_536
# Lambda is a float sum (0.2 + 2.2 + 0.6 = 3.0000000000000004): a request due within this
# of the schedule's total is due at its end, which is not in it ([0, end), as for a step).
_SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class Stage:
    """``duration_ns`` of traffic whose rate goes linearly from ``start_rps`` to ``end_rps``."""

    duration_ns: int
    start_rps: float
    end_rps: float

    def __post_init__(self) -> None:
        if self.duration_ns <= 0:
            raise ValueError(f"duration: must be positive (got {self.duration_ns}ns)")
        for name in ("start_rps", "end_rps"):
            rate = getattr(self, name)
            if not (math.isfinite(rate) and rate >= 0):
                raise ValueError(f"rate: must be a finite number >= 0 (got {rate})")

    @classmethod
    def steady(cls, duration_ns: int, rate_rps: float) -> Stage:
        """A step: ``rate_rps`` for the whole stage."""
        return cls(duration_ns, rate_rps, rate_rps)

    @property
    def requests(self) -> float:
        """Lambda over the stage: the expected number of requests in it."""
        return (self.start_rps + self.end_rps) / 2 * self.duration_ns / 1e9


@dataclass(frozen=True, slots=True)
class Schedule:
    """Stages, an arrival process, and an optional cap on the total request count."""

    stages: tuple[Stage, ...]
    arrival: str = "constant"
    max_requests: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("stages: at least one stage is needed")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival: {self.arrival!r} is not one of {', '.join(ARRIVALS)}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"requests: must be at least 1 (got {self.max_requests})")
        if sum(stage.requests for stage in self.stages) <= 0:
            raise ValueError("rate: every stage has rate 0, so nothing would be sent")

    @classmethod
    def constant_rate(
        cls,
        rate_rps: float,
        duration_ns: int | None = None,
        requests: int | None = None,
        arrival: str = "constant",
        seed: int = 0,
    ) -> Schedule:
        """``rate_rps`` for ``duration_ns``, or until ``requests`` have been sent (or both)."""
        if duration_ns is None:
            if requests is None:
                raise ValueError("duration: give a duration or a request count")
            if not rate_rps > 0:
                raise ValueError(f"rate: must be positive (got {rate_rps})")
            # Long enough for every request, with room for Poisson gaps.
            duration_ns = math.ceil((requests / rate_rps) * 1e9 * 2 + 60e9)
        return cls((Stage.steady(duration_ns, rate_rps),), arrival, requests, seed)

    @property
    def duration_ns(self) -> int:
        """Length of all stages together."""
        return sum(stage.duration_ns for stage in self.stages)

    def expected_requests(self) -> int:
        """Request count for constant arrivals (Poisson: the expectation, rounded up)."""
        total = math.ceil(sum(stage.requests for stage in self.stages) - _SLACK)
        return total if self.max_requests is None else min(total, self.max_requests)


class _Inverse:
    """Maps Lambda values to times (ns from start) through the piecewise-quadratic Lambda."""

    def __init__(self, stages: tuple[Stage, ...]) -> None:
        self.start_ns = np.cumsum([0] + [s.duration_ns for s in stages[:-1]]).astype(np.int64)
        self.start_lambda = np.cumsum([0.0] + [s.requests for s in stages[:-1]])
        self.end_lambda = self.start_lambda + np.array([s.requests for s in stages])
        self.total = float(self.end_lambda[-1])
        self.r0 = np.array([s.start_rps for s in stages])
        self.slope = np.array([(s.end_rps - s.start_rps) / (s.duration_ns / 1e9) for s in stages])

    def __call__(self, lam: np.ndarray) -> np.ndarray:
        # The first stage whose Lambda range ends past lam (skips stages with rate 0).
        j = np.searchsorted(self.end_lambda, lam, side="right")
        du = lam - self.start_lambda[j]
        r0, a = self.r0[j], self.slope[j] / 2
        # Solves a*s^2 + r0*s = du in the form stable for a -> 0 and for a < 0;
        # du = 0 (a ramp's first request, possibly at rate 0) is s = 0.
        root = r0 + np.sqrt(np.maximum(r0 * r0 + 4 * a * du, 0.0))
        s = np.divide(2 * du, root, out=np.zeros_like(du), where=du > 0)
        return self.start_ns[j] + np.rint(s * 1e9).astype(np.int64)


def _lambda_chunks(schedule: Schedule) -> Iterator[np.ndarray]:
    # Fixed-size chunks: the same floating-point sums, so the same times, on every run.
    rng = np.random.default_rng(schedule.seed)
    done, last = 0, 0.0
    while True:
        n = CHUNK if schedule.max_requests is None else min(CHUNK, schedule.max_requests - done)
        if n <= 0:
            return
        if schedule.arrival == "constant":
            lam = np.arange(done, done + n, dtype=np.float64)
        else:
            lam = last + np.cumsum(rng.standard_exponential(n))
            last = float(lam[-1])
        yield lam
        done += n


def intended_offsets(schedule: Schedule) -> Iterator[np.ndarray]:
    """Every intended send time of the schedule, in order, as int64 ns from its start."""
    inverse = _Inverse(schedule.stages)
    for lam in _lambda_chunks(schedule):
        inside = lam < inverse.total - _SLACK
        if inside.any():
            yield inverse(lam[inside])
        if not inside.all():
            return


def share(schedule: Schedule, worker: int, workers: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generator ``worker`` of ``workers``: (global request indices, offsets ns), in chunks."""
    if not 0 <= worker < workers:
        raise ValueError(f"worker: {worker} is not in [0, {workers})")
    first = 0
    for offsets in intended_offsets(schedule):
        indices = np.arange(first, first + len(offsets), dtype=np.int64)
        mine = indices % workers == worker
        first += len(offsets)
        if mine.any():
            yield indices[mine], offsets[mine]
