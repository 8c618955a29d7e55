"""Latency and error specs for the dependency's endpoints.

A latency SPEC is a comma-separated list of items ``VALUE[*COUNT]``, one
endpoint per item (COUNT repeats it), compatible with the essay's tool:
``200*9,30000`` and ``200ms*9,30s`` both mean nine 200 ms endpoints and one
30 s endpoint. A bare number is milliseconds; ``ns``, ``us``, ``ms`` and ``s``
units are accepted. A VALUE may be a distribution:

    uniform(100ms,300ms)        every value in [low, high] equally likely
    lognormal(200ms,p99=2s)     median 200 ms, 99th percentile 2 s

An errors SPEC has the same shape with probabilities in [0, 1] of answering
HTTP 500: ``0*9,0.5`` makes endpoint 9 fail half the time.

Parsing is pure; a bad spec raises ``ValueError`` naming the item.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
MAX_DURATION_NS = 10**15  # about 11.5 days; far inside int64 nanoseconds
# Largest unit first, so formatting picks the shortest exact spelling.
_FORMAT_UNITS = sorted(UNIT_NS.items(), key=lambda kv: -kv[1])
# z-score of the 99th percentile of a standard normal distribution.
_Z99 = 2.3263478740408408


def parse_duration_ns(text: str, default_unit: str = "ms") -> int:
    """Parse ``'200'``, ``'1.5s'``, ``'150us'`` into whole nanoseconds.

    A bare number is in ``default_unit``. Raises ``ValueError`` for a negative
    value, an unknown unit or a value finer than one nanosecond.
    """
    text = text.strip()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :] or default_unit
    if unit not in UNIT_NS:
        raise ValueError(f"unknown unit {unit!r} in {text!r} (use ns, us, ms or s)")
    try:
        value = Decimal(number.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a duration") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a duration")
    if value < 0:
        raise ValueError(f"duration {text!r} is negative")
    ns = value * UNIT_NS[unit]
    if ns > MAX_DURATION_NS:
        raise ValueError(f"duration {text!r} is too large (the limit is 1000000s)")
    if ns != ns.to_integral_value():
        raise ValueError(f"duration {text!r} is finer than 1ns")
    return int(ns)


def format_duration_ns(ns: int) -> str:
    """Shortest exact spelling of ``ns`` with a unit: ``30s``, ``200ms``, ``1500us``."""
    for unit, size in _FORMAT_UNITS:
        if ns % size == 0:
            return f"{ns // size}{unit}"
    raise AssertionError("unreachable: 1ns divides every integer")


@dataclass(frozen=True, slots=True)
class Fixed:
    """Every request takes exactly ``ns``."""

    ns: int

    def sample_ns(self, rng: random.Random) -> int:
        """One latency draw (always ``ns``)."""
        return self.ns

    def mean_ns(self, cap_ns: int | None = None) -> float:
        """Mean latency, of ``min(latency, cap)`` when a cap (a caller's timeout) is given."""
        return float(self.ns if cap_ns is None else min(self.ns, cap_ns))

    def __str__(self) -> str:
        return format_duration_ns(self.ns)


@dataclass(frozen=True, slots=True)
class Uniform:
    """Latency uniformly distributed over [low_ns, high_ns]."""

    low_ns: int
    high_ns: int

    def __post_init__(self) -> None:
        if self.low_ns > self.high_ns:
            raise ValueError("uniform: low is greater than high")

    def sample_ns(self, rng: random.Random) -> int:
        """One latency draw."""
        return rng.randint(self.low_ns, self.high_ns)

    def mean_ns(self, cap_ns: int | None = None) -> float:
        """Mean latency, of ``min(latency, cap)`` when a cap is given."""
        low, high = self.low_ns, self.high_ns
        if cap_ns is None or cap_ns >= high:
            return (low + high) / 2
        if cap_ns <= low or high == low:
            return float(min(cap_ns, low))
        below = (cap_ns - low) / (high - low)  # P(latency < cap)
        return below * (low + cap_ns) / 2 + (1 - below) * cap_ns

    def __str__(self) -> str:
        return f"uniform({format_duration_ns(self.low_ns)},{format_duration_ns(self.high_ns)})"


@dataclass(frozen=True, slots=True)
class LogNormal:
    """Log-normal latency given by its median and its 99th percentile."""

    median_ns: int
    p99_ns: int

    def __post_init__(self) -> None:
        if self.median_ns <= 0:
            raise ValueError("lognormal: median must be positive")
        if self.p99_ns <= self.median_ns:
            raise ValueError("lognormal: p99 must be greater than the median")

    def sample_ns(self, rng: random.Random) -> int:
        """One latency draw."""
        sigma = math.log(self.p99_ns / self.median_ns) / _Z99
        return round(rng.lognormvariate(math.log(self.median_ns), sigma))

    def mean_ns(self, cap_ns: int | None = None) -> float:
        """Mean latency, of ``min(latency, cap)`` when a cap is given (closed form)."""
        mu, sigma = math.log(self.median_ns), math.log(self.p99_ns / self.median_ns) / _Z99
        mean = math.exp(mu + sigma**2 / 2)
        if cap_ns is None:
            return mean
        z = (math.log(cap_ns) - mu) / sigma

        def phi(x: float) -> float:
            return 0.5 * (1 + math.erf(x / math.sqrt(2)))

        return mean * phi(z - sigma) + cap_ns * (1 - phi(z))

    def __str__(self) -> str:
        median, p99 = format_duration_ns(self.median_ns), format_duration_ns(self.p99_ns)
        return f"lognormal({median},p99={p99})"


Latency = Fixed | Uniform | LogNormal


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError("unbalanced '('")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _split_count(item: str) -> tuple[str, int]:
    """``'200*9'`` -> ``('200', 9)``; ``'200'`` -> ``('200', 1)``."""
    value, star, count_text = item.rpartition("*")
    if not star:
        return item, 1
    if not count_text.strip().isdigit() or int(count_text) < 1:
        raise ValueError(f"count {count_text!r} is not a positive integer")
    return value.strip(), int(count_text)


def _parse_distribution(name: str, args_text: str) -> Latency:
    args = _split_top_level(args_text)
    positional = [a for a in args if "=" not in a]
    named = dict(a.split("=", 1) for a in args if "=" in a)
    named = {k.strip(): v for k, v in named.items()}
    if name == "uniform":
        if named or len(positional) != 2:
            raise ValueError("uniform takes two durations: uniform(low,high)")
        return Uniform(parse_duration_ns(positional[0]), parse_duration_ns(positional[1]))
    if name == "lognormal":
        if "median" in named:
            positional.insert(0, named.pop("median"))
        if len(positional) != 1 or set(named) != {"p99"}:
            raise ValueError("lognormal takes a median and p99=: lognormal(200ms,p99=2s)")
        return LogNormal(parse_duration_ns(positional[0]), parse_duration_ns(named["p99"]))
    raise ValueError(f"unknown distribution {name!r} (use uniform or lognormal)")


def parse_latency_value(text: str) -> Latency:
    """One VALUE: a duration (bare number = ms) or a distribution."""
    text = text.strip()
    if not text:
        raise ValueError("empty value")
    if text.endswith(")") and "(" in text:
        name, _, rest = text.partition("(")
        return _parse_distribution(name.strip().lower(), rest[:-1])
    return Fixed(parse_duration_ns(text))


def _parse_items(spec: str, what: str, parse_value) -> tuple:
    if not spec.strip():
        raise ValueError(f"{what} spec is empty")
    try:
        items = _split_top_level(spec)
    except ValueError as exc:
        raise ValueError(f"{what} spec {spec!r}: {exc}") from None
    values: list = []
    for number, item in enumerate(items, start=1):
        try:
            value_text, count = _split_count(item)
            values.extend([parse_value(value_text)] * count)
        except ValueError as exc:
            raise ValueError(f"{what} spec item {number} {item!r}: {exc}") from None
    return tuple(values)


def parse_latency_spec(spec: str) -> tuple[Latency, ...]:
    """Parse a latency SPEC into one latency per endpoint."""
    return _parse_items(spec, "latency", parse_latency_value)


def _parse_probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a probability") from None
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability {text} is outside [0, 1]")
    return p


def parse_error_spec(spec: str, endpoints: int, what: str = "errors") -> tuple[float, ...]:
    """Parse an errors SPEC (or another of probabilities, named ``what``) into one
    probability per endpoint.

    A spec of a single value applies it to every endpoint; otherwise it must
    give exactly ``endpoints`` values.
    """
    return _per_endpoint(spec, endpoints, what, _parse_probability)


def _parse_bytes_per_second(text: str) -> int:
    if not text.strip().isdigit():
        raise ValueError(f"{text!r} is not a whole number of bytes per second")
    return int(text)


def parse_bandwidth_spec(spec: str, endpoints: int) -> tuple[int, ...]:
    """Parse a bandwidth SPEC (bytes per second of response body, 0: unlimited) into one
    value per endpoint, as ``parse_error_spec`` does."""
    return _per_endpoint(spec, endpoints, "bandwidth", _parse_bytes_per_second)


def _per_endpoint(spec: str, endpoints: int, what: str, parse_value) -> tuple:
    values = _parse_items(spec, what, parse_value)
    if len(values) == 1:
        return values * endpoints
    if len(values) != endpoints:
        raise ValueError(
            f"{what} spec {spec!r} gives {len(values)} endpoints, the latency spec {endpoints}"
        )
    return values


def _format_items(values) -> str:
    runs: list[list] = []
    for value in values:
        if runs and runs[-1][0] == value:
            runs[-1][1] += 1
        else:
            runs.append([value, 1])
    return ",".join(f"{v}*{n}" if n > 1 else f"{v}" for v, n in runs)


def format_latency_spec(latencies: tuple[Latency, ...]) -> str:
    """Canonical spec text; ``parse_latency_spec`` gives the same tuple back."""
    return _format_items(latencies)


def format_error_spec(probabilities: tuple[float, ...]) -> str:
    """Canonical errors spec text; ``parse_error_spec`` gives the same tuple back."""
    return _format_items(repr(float(p)) for p in probabilities)


def format_bandwidth_spec(limits: tuple[int, ...]) -> str:
    """Canonical bandwidth spec text; ``parse_bandwidth_spec`` gives the same tuple back."""
    return _format_items(limits)
