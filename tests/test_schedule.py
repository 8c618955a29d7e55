"""Schedules without a clock: spacing, Poisson statistics, stages, interleaving."""

import math

import numpy as np
import pytest

from blastradius.workers.schedule import CHUNK, Schedule, Stage, intended_offsets, share

S = 1_000_000_000


def times(schedule: Schedule) -> np.ndarray:
    return np.concatenate(list(intended_offsets(schedule)))


@pytest.mark.parametrize(
    ("rate", "seconds", "count"),
    [
        (1000, 30, 30_000),
        (300, 3, 900),
        (1, 5, 5),
        (0.5, 10, 5),
        (7, 1, 7),
    ],
)
def test_constant_rate_is_exactly_spaced(rate, seconds, count):
    t = times(Schedule.constant_rate(rate, duration_ns=seconds * S))
    assert len(t) == count
    assert t[0] == 0
    # Each time is the exact i / rate rounded to the nanosecond.
    assert np.array_equal(t, np.rint(np.arange(count) * (S / rate)).astype(np.int64))


@pytest.mark.parametrize(
    ("kwargs", "count", "last_ns"),
    [
        ({"requests": 250}, 250, 249 * 10_000_000),
        ({"requests": 250, "duration_ns": 1 * S}, 100, 99 * 10_000_000),
        ({"requests": 50, "duration_ns": 1 * S}, 50, 49 * 10_000_000),
    ],
)
def test_a_count_or_a_duration_ends_the_schedule_whichever_comes_first(kwargs, count, last_ns):
    t = times(Schedule.constant_rate(100, **kwargs))
    assert len(t) == count
    assert t[-1] == last_ns


def test_long_schedules_come_in_bounded_chunks():
    chunks = list(intended_offsets(Schedule.constant_rate(10_000, duration_ns=20 * S)))
    assert sum(len(c) for c in chunks) == 200_000
    assert max(len(c) for c in chunks) <= CHUNK
    assert np.all(np.diff(np.concatenate(chunks)) > 0)


def test_poisson_mean_rate_and_variance_hold():
    rate, seconds = 1000, 100
    t = times(Schedule.constant_rate(rate, duration_ns=seconds * S, arrival="poisson", seed=7))
    n = len(t)
    # The count is Poisson(rate * seconds): within 5 standard deviations.
    assert abs(n - rate * seconds) < 5 * math.sqrt(rate * seconds)
    gaps_s = np.diff(t) / S
    # Exponential gaps: mean 1/rate, variance 1/rate^2 (relative standard error ~0.3% / 0.6%).
    assert gaps_s.mean() == pytest.approx(1 / rate, rel=0.02)
    assert gaps_s.var() == pytest.approx(1 / rate**2, rel=0.05)
    # Counts per second are Poisson too: variance equals the mean (dispersion 1).
    per_second = np.bincount((t // S).astype(np.int64), minlength=seconds)
    assert per_second.var() / per_second.mean() == pytest.approx(1.0, abs=0.35)


def test_poisson_is_reproducible_from_its_seed():
    def make(seed):
        return Schedule.constant_rate(500, duration_ns=200 * S, arrival="poisson", seed=seed)

    assert np.array_equal(times(make(3)), times(make(3)))
    assert not np.array_equal(times(make(3))[:100], times(make(4))[:100])


@pytest.mark.parametrize(
    ("stages", "per_stage"),
    [
        # steps
        (
            [Stage.steady(10 * S, 100), Stage.steady(5 * S, 0), Stage.steady(10 * S, 300)],
            [1000, 0, 3000],
        ),
        # a ramp up, a plateau and a ramp down
        (
            [Stage(10 * S, 0, 100), Stage.steady(10 * S, 100), Stage(10 * S, 100, 0)],
            [500, 1000, 500],
        ),
        ([Stage(4 * S, 50, 150)], [400]),
    ],
)
def test_stages_produce_the_right_counts_per_stage(stages, per_stage):
    t = times(Schedule(tuple(stages)))
    edges = np.cumsum([0] + [stage.duration_ns for stage in stages])
    counts = np.histogram(t, bins=edges)[0]
    assert counts.tolist() == per_stage


def test_a_linear_ramp_follows_the_integral_of_its_rate():
    # 0 -> 100 rps over 10 s: Lambda(t) = 5 t^2, so 125 requests in the first 5 s.
    t = times(Schedule((Stage(10 * S, 0, 100),)))
    assert np.sum(t < 5 * S) == 125
    assert t[0] == 0
    # Request i is due at sqrt(i / 5) seconds.
    i = np.arange(len(t))
    assert np.max(np.abs(t - np.sqrt(i / 5) * S)) <= 1


@pytest.mark.parametrize("workers", [1, 2, 3, 7])
@pytest.mark.parametrize("arrival", ["constant", "poisson"])
def test_interleaving_n_ways_gives_back_the_single_schedule(workers, arrival):
    schedule = Schedule.constant_rate(3000, duration_ns=50 * S, arrival=arrival, seed=1)
    whole = times(schedule)
    merged = np.empty_like(whole)
    seen = 0
    for worker in range(workers):
        for indices, offsets in share(schedule, worker, workers):
            assert np.all(indices % workers == worker)
            merged[indices] = offsets
            seen += len(indices)
    assert seen == len(whole)
    assert np.array_equal(merged, whole)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Schedule(()), "stages: at least one stage"),
        (
            lambda: Schedule((Stage.steady(S, 10),), arrival="burst"),
            "arrival: 'burst' is not one of",
        ),
        (lambda: Schedule((Stage.steady(S, 0),)), "rate: every stage has rate 0"),
        (lambda: Schedule((Stage.steady(S, 10),), max_requests=0), "requests: must be at least 1"),
        (lambda: Stage.steady(0, 10), "duration: must be positive"),
        (lambda: Stage.steady(S, -1), "rate: must be a finite number >= 0"),
        (lambda: Stage.steady(S, math.inf), "rate: must be a finite number >= 0"),
        (lambda: Schedule.constant_rate(10), "duration: give a duration or a request count"),
        (lambda: Schedule.constant_rate(0, requests=10), "rate: must be positive"),
        (lambda: list(share(Schedule.constant_rate(1, requests=1), 2, 2)), "worker: 2 is not in"),
    ],
)
def test_invalid_schedules_name_the_field(build, message):
    with pytest.raises(ValueError, match="^" + message.split(":")[0]) as info:
        build()
    assert message in str(info.value)
