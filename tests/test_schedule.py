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
        (lambda: Stage.steady(-S, 10), "duration: must be positive"),
        (lambda: Stage.steady(S, -1), "rate: must be a finite number >= 0"),
        (lambda: Stage.steady(S, math.inf), "rate: must be a finite number >= 0"),
        (lambda: Schedule.constant_rate(10), "duration: give a duration or a request count"),
        (lambda: Schedule.constant_rate(0, requests=10), "rate: must be positive"),
        (lambda: Schedule.constant_rate(-5, requests=10), "rate: must be positive"),
        (lambda: list(share(Schedule.constant_rate(1, requests=1), 2, 2)), "worker: 2 is not in"),
    ],
)
def test_invalid_schedules_name_the_field(build, message):
    with pytest.raises(ValueError, match="^" + message.split(":")[0]) as info:
        build()
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (Schedule.constant_rate(10, duration_ns=S), 10),
        # 0.1 * 3 s sums to 0.30000000000000004 requests' worth: still 1 (the first, at 0).
        (Schedule((Stage.steady(S, 0.1), Stage.steady(S, 0.1), Stage.steady(S, 0.1))), 1),
        (Schedule((Stage.steady(3 * S, 0.1),)), 1),
        # 0.2 + 2.2 + 0.6 sums to 3.0000000000000004: 3, the 4th would be due at the end.
        (Schedule((Stage.steady(S, 0.2), Stage.steady(S, 2.2), Stage.steady(S, 0.6))), 3),
        (Schedule((Stage(S, 0, 1),)), 1),  # half a request's worth: the one at 0
        (Schedule.constant_rate(100, duration_ns=S, requests=7), 7),
        (Schedule.constant_rate(100, duration_ns=S, requests=700), 100),
    ],
)
def test_expected_requests_is_what_a_constant_schedule_sends(schedule, expected):
    assert schedule.expected_requests() == expected
    assert len(times(schedule)) == expected


@pytest.mark.parametrize(
    ("stage", "requests"),
    [
        (Stage.steady(S, 10), 10.0),
        (Stage.steady(1_500_000_000, 1), 1.5),
        (Stage(S, 0, 1), 0.5),
        (Stage(2 * S, 1, 2), 3.0),
    ],
)
def test_a_stage_holds_its_rates_integral(stage, requests):
    assert stage.requests == pytest.approx(requests, abs=1e-12)


def test_a_single_request_is_sent_at_once():
    assert times(Schedule.constant_rate(5, requests=1)).tolist() == [0]
    assert times(Schedule((Stage(S, 0, 1),))).tolist() == [0]


def test_later_stages_start_at_the_end_of_the_earlier_ones():
    # Two steps of 1.5 s: the second's requests are its own spacing from 1.5 s on.
    t = times(Schedule((Stage.steady(1_500_000_000, 2), Stage.steady(1_500_000_000, 4))))
    expected = [0, 500_000_000, 1_000_000_000]
    expected += [1_500_000_000 + k * 250_000_000 for k in range(6)]
    assert t.tolist() == expected


@pytest.mark.parametrize(
    ("seconds", "end_rps", "count"),
    [
        (0.5, 40, 10),  # shorter than a second
        (0.7, 30, 11),  # a slope that is not a whole number (42.857 rps/s)
        (100, 0.1, 5),  # slow: Lambda stays under 1 for the first 44 s
    ],
)
def test_a_ramp_from_zero_follows_its_integral(seconds, end_rps, count):
    # Lambda(t) = slope t^2 / 2, so request i is due at sqrt(2 i / slope).
    slope = end_rps / seconds
    t = times(Schedule((Stage(round(seconds * S), 0, end_rps),)))
    assert len(t) == count
    assert np.max(np.abs(t - np.sqrt(2 * np.arange(count) / slope) * S)) <= 1


def test_a_request_count_alone_leaves_room_for_every_request():
    # The stage is twice the mean time for the count, plus a minute: Poisson gaps never
    # cut a run short, and the planned end (for lost generators' windows) stays near.
    for rate, requests in [(100, 1000), (0.5, 3), (10_000, 1)]:
        schedule = Schedule.constant_rate(rate, requests=requests)
        assert schedule.duration_ns == math.ceil(requests / rate * 2e9 + 60e9)
    for seed in range(5):
        poisson = Schedule.constant_rate(1000, requests=5000, arrival="poisson", seed=seed)
        assert len(times(poisson)) == 5000


def test_poisson_chunks_continue_one_another():
    t = times(Schedule.constant_rate(1e6, requests=CHUNK + 100, arrival="poisson", seed=2))
    assert len(t) == CHUNK + 100
    assert np.all(np.diff(t) >= 0)
    gaps = np.diff(t[CHUNK - 50 : CHUNK + 50])  # across the boundary: no jump back or ahead
    assert gaps.max() < 20_000  # 20 mean gaps at 1e6 rps


def test_the_shortest_stage_is_a_nanosecond():
    assert Stage.steady(1, 10).duration_ns == 1


def test_schedules_are_immutable_and_default_to_seed_0():
    schedule = Schedule.constant_rate(10, duration_ns=S, arrival="poisson")
    assert schedule.seed == 0
    with pytest.raises(AttributeError):
        schedule.seed = 1
    with pytest.raises(AttributeError):
        schedule.stages[0].end_rps = 5
    assert Schedule((Stage.steady(S, 1),)).seed == 0


@pytest.mark.parametrize(("worker", "workers"), [(2, 2), (5, 3), (-1, 3)])
def test_a_worker_outside_the_range_is_refused(worker, workers):
    with pytest.raises(ValueError, match=f"^worker: {worker} is not in"):
        list(share(Schedule.constant_rate(1, requests=1), worker, workers))


def test_the_first_poisson_arrival_is_an_exponential_draw_from_the_start():
    # Over 400 seeds, the first arrival at 10 rps comes after 0.1 s on average (Exp(1)
    # requests' worth; the standard error of this mean is 5%).
    firsts = [
        times(Schedule.constant_rate(10, requests=1, arrival="poisson", seed=seed))[0]
        for seed in range(400)
    ]
    assert np.mean(firsts) / S == pytest.approx(0.1, rel=0.2)
    assert min(firsts) > 0
