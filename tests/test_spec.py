"""Latency and error spec parsing: tables of valid and invalid specs, round trips."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from blastradius.targets.spec import (
    Fixed,
    LogNormal,
    Uniform,
    format_duration_ns,
    format_error_spec,
    format_latency_spec,
    parse_duration_ns,
    parse_error_spec,
    parse_latency_spec,
)

MS = 1_000_000
S = 1_000_000_000

VALID = [
    ("200*9,30000", (Fixed(200 * MS),) * 9 + (Fixed(30 * S),)),
    ("200ms*9,30s", (Fixed(200 * MS),) * 9 + (Fixed(30 * S),)),
    ("200*10", (Fixed(200 * MS),) * 10),
    ("600*10", (Fixed(600 * MS),) * 10),
    ("0", (Fixed(0),)),
    ("1.5", (Fixed(1_500_000),)),
    ("150us", (Fixed(150_000),)),
    ("2s", (Fixed(2 * S),)),
    ("0.25s", (Fixed(250 * MS),)),
    ("7ns", (Fixed(7),)),
    (" 100 , 200 ", (Fixed(100 * MS), Fixed(200 * MS))),
    ("uniform(100ms,300ms)", (Uniform(100 * MS, 300 * MS),)),
    ("uniform(100, 300)*2", (Uniform(100 * MS, 300 * MS),) * 2),
    ("lognormal(200ms,p99=2s)", (LogNormal(200 * MS, 2 * S),)),
    ("lognormal(median=200ms,p99=2s)", (LogNormal(200 * MS, 2 * S),)),
    (
        "200*2,lognormal(200ms,p99=2s)*3,1s",
        (Fixed(200 * MS),) * 2 + (LogNormal(200 * MS, 2 * S),) * 3 + (Fixed(S),),
    ),
]

INVALID = [
    ("", "latency spec is empty"),
    ("   ", "latency spec is empty"),
    ("200,", "item 2 ''"),
    ("200*9,3q", "item 2 '3q': unknown unit 'q'"),
    ("200*0", "item 1 '200*0': count '0'"),
    ("200*x", "item 1 '200*x': count 'x'"),
    ("200*-1", "item 1 '200*-1'"),
    ("-5", "item 1 '-5': duration '-5' is negative"),
    ("abc", "item 1 'abc'"),
    ("0.5ns", "finer than 1ns"),
    ("1e400000s", "item 1 '1e400000s': duration '1e400000s' is too large"),
    ("uniform(300ms,100ms)", "item 1 'uniform(300ms,100ms)': uniform: low is greater than high"),
    ("uniform(100ms)", "uniform takes two durations"),
    ("lognormal(2s,p99=1s)", "p99 must be greater than the median"),
    ("lognormal(200ms)", "lognormal takes a median and p99="),
    ("lognormal(0,p99=1s)", "median must be positive"),
    ("gamma(1s)", "unknown distribution 'gamma'"),
    ("200,uniform(1,2", "unbalanced '('"),
    ("200)", "unbalanced ')'"),
]


@pytest.mark.parametrize(("spec", "expected"), VALID)
def test_valid_latency_specs(spec, expected):
    assert parse_latency_spec(spec) == expected


@pytest.mark.parametrize(("spec", "message"), INVALID)
def test_invalid_latency_specs_name_the_item(spec, message):
    with pytest.raises(ValueError, match="latency spec") as info:
        parse_latency_spec(spec)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("spec", "endpoints", "expected"),
    [
        ("0*9,0.5", 10, (0.0,) * 9 + (0.5,)),
        ("0.1", 3, (0.1, 0.1, 0.1)),
        ("1,0", 2, (1.0, 0.0)),
    ],
)
def test_valid_error_specs(spec, endpoints, expected):
    assert parse_error_spec(spec, endpoints) == expected


@pytest.mark.parametrize(
    ("spec", "endpoints", "message"),
    [
        ("0*9,1.5", 10, "item 2 '1.5': probability 1.5 is outside [0, 1]"),
        ("0,-0.1", 2, "item 2 '-0.1'"),
        ("0,x", 2, "item 2 'x': 'x' is not a probability"),
        ("0,0,0", 2, "gives 3 endpoints, the latency spec 2"),
        ("", 2, "errors spec is empty"),
    ],
)
def test_invalid_error_specs_name_the_item(spec, endpoints, message):
    with pytest.raises(ValueError) as info:
        parse_error_spec(spec, endpoints)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "unit", "ns"),
    [
        ("10", "s", 10 * S),
        ("10s", "ms", 10 * S),
        ("250ms", "s", 250 * MS),
        ("1.5", "s", 1500 * MS),
    ],
)
def test_durations_take_a_default_unit(text, unit, ns):
    assert parse_duration_ns(text, default_unit=unit) == ns


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (30 * S, "30s"),
        (200 * MS, "200ms"),
        (1_500_000, "1500us"),
        (7, "7ns"),
        (0, "0s"),
    ],
)
def test_durations_format_in_the_largest_exact_unit(ns, text):
    assert format_duration_ns(ns) == text


durations = st.integers(min_value=0, max_value=10**13)
latencies = st.one_of(
    durations.map(Fixed),
    st.tuples(durations, durations).map(lambda t: Uniform(min(t), max(t))),
    st.tuples(st.integers(1, 10**12), st.integers(1, 10**12)).map(
        lambda t: LogNormal(t[0], t[0] + t[1])
    ),
)


@given(st.lists(latencies, min_size=1, max_size=30))
def test_latency_spec_round_trips(endpoints):
    spec = format_latency_spec(tuple(endpoints))
    assert parse_latency_spec(spec) == tuple(endpoints)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=30))
def test_error_spec_round_trips(probabilities):
    spec = format_error_spec(tuple(probabilities))
    assert parse_error_spec(spec, len(probabilities)) == tuple(probabilities)


def test_format_compresses_runs_like_the_essay():
    assert format_latency_spec(parse_latency_spec("200*9,30000")) == "200ms*9,30s"


def test_distributions_draw_within_their_shape():
    rng = random.Random(1)
    uniform = Uniform(100 * MS, 300 * MS)
    draws = [uniform.sample_ns(rng) for _ in range(2000)]
    assert min(draws) >= 100 * MS and max(draws) <= 300 * MS
    assert 180 * MS < sum(draws) / len(draws) < 220 * MS

    lognormal = LogNormal(200 * MS, 2 * S)
    draws = sorted(lognormal.sample_ns(rng) for _ in range(200_000))
    median, p99 = draws[len(draws) // 2], draws[int(len(draws) * 0.99)]
    # Sampling error at 200,000 draws: about 0.3% for the median and 0.8% for the p99.
    assert median == pytest.approx(200 * MS, rel=0.02)
    assert p99 == pytest.approx(2 * S, rel=0.04)


@pytest.mark.parametrize(
    ("latency", "cap_ns", "mean_ns"),
    [
        (Fixed(200 * MS), None, 200 * MS),
        (Fixed(30 * S), 1 * S, 1 * S),
        (Fixed(200 * MS), 1 * S, 200 * MS),
        (Uniform(100 * MS, 300 * MS), None, 200 * MS),
        (Uniform(100 * MS, 300 * MS), 300 * MS, 200 * MS),
        # Half below the cap (mean 150 ms), half capped at 200 ms.
        (Uniform(100 * MS, 300 * MS), 200 * MS, 175 * MS),
        (Uniform(100 * MS, 300 * MS), 50 * MS, 50 * MS),
    ],
)
def test_mean_latency_with_and_without_a_cap(latency, cap_ns, mean_ns):
    assert latency.mean_ns(cap_ns) == pytest.approx(mean_ns)


@pytest.mark.parametrize("cap_ns", [None, 150 * MS, 400 * MS, 2 * S])
def test_lognormal_mean_matches_its_draws(cap_ns):
    latency = LogNormal(200 * MS, 1 * S)
    rng = random.Random(3)
    draws = [latency.sample_ns(rng) for _ in range(200_000)]
    if cap_ns is not None:
        draws = [min(d, cap_ns) for d in draws]
    assert latency.mean_ns(cap_ns) == pytest.approx(sum(draws) / len(draws), rel=0.02)
