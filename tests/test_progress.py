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
