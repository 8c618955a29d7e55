"""The live counters' log histogram: quantiles within a bucket's width."""

import numpy as np
import pytest

from blastradius.workers.progress import LogHistogram


@pytest.mark.parametrize("q", [0.5, 0.9, 0.99, 0.999])
def test_quantiles_are_within_one_bucket_of_the_exact_ones(q):
    values = np.random.default_rng(5).lognormal(np.log(2e6), 1.0, 50_000).astype(np.int64)
    histogram = LogHistogram()
    for chunk in np.array_split(values, 7):
        histogram.add(chunk)
    exact = np.quantile(values, q, method="inverted_cdf")
    assert exact <= histogram.quantile_ns(q) <= exact * 1.045


def test_edges_of_the_range():
    histogram = LogHistogram()
    assert histogram.quantile_ns(0.99) is None
    histogram.add(np.array([0, 0, 0], np.int64))
    assert histogram.quantile_ns(0.99) == 1e3  # below 1 us: the first bucket's edge
    histogram.add(np.array([10**13] * 97, np.int64))
    assert histogram.quantile_ns(0.99) == 1e12  # beyond 1000 s: the last edge


def progress(counts=(0, 0, 0, {}), window=None, **given):
    """A progress message: ``given`` fields, the rest nothing yet."""
    from blastradius.workers.messages import Progress, Window

    fields = {"worker": 0, "target": "t", "node": "n", "elapsed_s": 0.0, "in_flight": 0}
    fields |= {"waiting": 0, "window": window or Window.empty(), **given}
    return Progress(*counts, **fields)


def summary(counts=(0, 0, 0, {}), **given):
    """A summary message: ``given`` fields, the rest nothing."""
    from blastradius.workers.messages import Summary

    fields = {"worker": 0, "target": "t", "node": "n", "send_lag_p99_ms": None}
    fields |= {"closed_loop": False, "started_ns": None, "ended_ns": None, "stopped": False}
    fields |= {"checks": {}}
    return Summary(*counts, **(fields | given))


def test_counts_add_up_over_generators_kind_by_kind():
    from blastradius.workers.messages import Counts

    parts = [
        progress((10, 12, 7, {"timeout": 2, "http": 1})),
        summary((5, 5, 5, {})),
        Counts(rows=3, sent=4, ok=0, errors={"timeout": 3}),
    ]
    assert Counts.total(parts) == Counts(18, 21, 12, {"timeout": 5, "http": 1})
    assert Counts.total([]) == Counts(0, 0, 0, {})


@pytest.mark.parametrize(
    ("total", "p99s", "expected"),
    [
        # ok share of the rows, the worst running window's p99, errors in kind order
        (
            (200, 210, 149, {"timeout": 31, "http": 20}),
            (12.4, None, 40.6),
            "t:   3.5s  sent      210  ok  74.5%      100 req/s  p99(1s)    41ms  "
            "errors http=20 timeout=31  generators 2/3",
        ),
        # nothing recorded yet, no window with an ok request
        (
            (0, 5, 0, {}),
            (None,),
            "t:   3.5s  sent        5  ok     -      100 req/s  p99(1s)       -  errors -  "
            "generators 2/3",
        ),
    ],
)
def test_a_progress_line_shows_the_counts_the_worst_window_and_the_generators(
    total, p99s, expected
):
    from blastradius.cluster.watch import progress_line
    from blastradius.workers.messages import Counts, Window

    running = [progress(window=Window(10, 9, p99)) for p99 in p99s]
    assert progress_line("t", Counts(*total), 3.5, running, 100.0, (2, 3)) == expected


def test_messages_are_frozen_and_carry_their_own_fields():
    import dataclasses

    from blastradius.workers.messages import Window

    ended = summary((1, 2, 1, {}), worker=3, target="u", stopped=True)
    assert (ended.worker, ended.target, ended.stopped, ended.rows) == (3, "u", True, 1)
    running = progress(window=Window(5, 4, 1.5), in_flight=7)
    assert (running.window.p99_ms, running.in_flight) == (1.5, 7)
    assert Window.empty() == Window(0, 0, None)
    for message in (ended, running, Window.empty()):
        with pytest.raises(dataclasses.FrozenInstanceError):
            message.worker = 0
