"""Fault schedules: an endpoint's latency or error rate changing at given times.

A schedule is a list of events, from a YAML/JSON file or a scenario block::

    - at: 10s            # time since the origin (a bare number is seconds): the
                         # dependency's start, or the time POST /clock set
      endpoint: 9        # an index, a list of indices, or "all"
      latency: 30s       # optional: a latency VALUE (bare number = ms, distributions allowed)
      errors: 0.5        # optional: probability of an error status (the dependency: 500)
      resets: 0.1        # optional (the proxy): probability of resetting the connection
      hangs: 0.1         # optional (the proxy): probability of never answering
      bandwidth: 10000   # optional (the proxy): response body bytes/s (0: unlimited)

An event holds until a later event changes the same endpoint (so recovery is
another event). ``EndpointModel`` answers, purely, what an endpoint looks like
at a given time.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from typing import Any

from blastradius.targets.fields import each, load_document
from blastradius.targets.spec import (
    Latency,
    format_duration_ns,
    parse_duration_ns,
    parse_latency_value,
)
from blastradius.targets.validation import FieldError

# What a fault (or a proxy's flags, or a scenario's proxy) may change, as the schedule
# names it; the proxy alone injects the last three.
PROBABILITIES = ("errors", "resets", "hangs")
FAULT_KEYS = ("latency", *PROBABILITIES, "bandwidth")
PROXY_ONLY = ("resets", "hangs", "bandwidth")
_EVENT_KEYS = {"at", "endpoint", *FAULT_KEYS}


@dataclass(frozen=True, slots=True)
class EndpointState:
    """How an endpoint behaves: its latency, and the probabilities of each injected fault
    (an error status, a reset, a hang), and a response bandwidth (0: unlimited)."""

    latency: Latency
    error_p: float = 0.0
    reset_p: float = 0.0
    hang_p: float = 0.0
    bandwidth_bps: int = 0


@dataclass(frozen=True, slots=True)
class Fault:
    """From ``at_ns`` on, ``endpoints`` take what is given here (None: unchanged)."""

    at_ns: int
    endpoints: tuple[int, ...] | None  # None: every endpoint
    latency: Latency | None = None
    error_p: float | None = None
    reset_p: float | None = None
    hang_p: float | None = None
    bandwidth_bps: int | None = None

    def __post_init__(self) -> None:
        if self.at_ns < 0:
            raise ValueError("at: must not be negative")
        changes = self.changes()
        if not changes:
            raise ValueError(f"give {', '.join(FAULT_KEYS[:-1])} or {FAULT_KEYS[-1]}")
        for key, p in changes:
            if key in PROBABILITIES and not 0.0 <= p <= 1.0:
                raise ValueError(f"{key}: probability outside [0, 1]")
        if self.bandwidth_bps is not None and self.bandwidth_bps < 0:
            raise ValueError("bandwidth: bytes per second, 0 or more")
        if self.endpoints is not None and any(i < 0 for i in self.endpoints):
            raise ValueError("endpoint: indices must not be negative")

    def changes(self) -> tuple[tuple[str, Any], ...]:
        """What it changes, by name (``FAULT_KEYS``) and value, in that order."""
        values = (self.latency, self.error_p, self.reset_p, self.hang_p, self.bandwidth_bps)
        return tuple((k, v) for k, v in zip(FAULT_KEYS, values, strict=True) if v is not None)

    @property
    def proxy_only(self) -> bool:
        """Whether it changes what only the proxy injects (``PROXY_ONLY``)."""
        return any(key in PROXY_ONLY for key, _ in self.changes())

    def applied(self, state: EndpointState) -> EndpointState:
        """``state`` with this fault's changes."""
        return EndpointState(
            state.latency if self.latency is None else self.latency,
            state.error_p if self.error_p is None else self.error_p,
            state.reset_p if self.reset_p is None else self.reset_p,
            state.hang_p if self.hang_p is None else self.hang_p,
            state.bandwidth_bps if self.bandwidth_bps is None else self.bandwidth_bps,
        )

    def to_event(self) -> dict:
        """This fault as a schedule event (``parse_fault`` reads it back equal)."""
        event: dict = {
            "at": format_duration_ns(self.at_ns),
            "endpoint": "all" if self.endpoints is None else list(self.endpoints),
        }
        for key, value in self.changes():
            event[key] = str(value) if key == "latency" else value
        return event


def _parse_at(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("at: expected a duration like 10s")
    return parse_duration_ns(str(value), default_unit="s")


def _parse_endpoints(value: object) -> tuple[int, ...] | None:
    if value == "all":
        return None
    items = value if isinstance(value, list) else [value]
    if not items or any(isinstance(i, bool) or not isinstance(i, int) for i in items):
        raise ValueError('endpoint: expected an index, a list of indices, or "all"')
    return tuple(items)


def _parse_probability(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key}: expected a probability in [0, 1]")
    return float(value)


def _parse_bandwidth(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("bandwidth: expected bytes per second, a whole number (0: unlimited)")
    return value


def parse_fault(event: object) -> Fault:
    """One schedule event (a mapping) into a ``Fault``; ``ValueError`` names the key."""
    if not isinstance(event, Mapping):
        raise ValueError("expected a mapping with at, endpoint, latency/errors")
    unknown = sorted(set(event) - _EVENT_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    for key in ("at", "endpoint"):
        if key not in event:
            raise ValueError(f"{key}: missing")
    latency = event.get("latency")

    def probability(key: str) -> float | None:
        value = event.get(key)
        return None if value is None else _parse_probability(value, key)

    bandwidth = event.get("bandwidth")
    return Fault(
        at_ns=_parse_at(event["at"]),
        endpoints=_parse_endpoints(event["endpoint"]),
        latency=None if latency is None else parse_latency_value(str(latency)),
        error_p=probability("errors"),
        reset_p=probability("resets"),
        hang_p=probability("hangs"),
        bandwidth_bps=None if bandwidth is None else _parse_bandwidth(bandwidth),
    )


def parse_faults(events: object) -> tuple[Fault, ...]:
    """A list of events (or ``{"faults": [...]}``) into faults sorted by time."""
    if isinstance(events, Mapping) and set(events) == {"faults"}:
        events = events["faults"]
    if events is None:
        return ()
    if not isinstance(events, Sequence) or isinstance(events, str):
        raise FieldError("faults", "expected a list of events")
    faults = each(events, "faults", parse_fault)
    return tuple(sorted(faults, key=lambda f: f.at_ns))


def load_faults(path: str | PathLike[str]) -> tuple[Fault, ...]:
    """Read a fault schedule from a YAML or JSON file (``-``: from stdin)."""
    return parse_faults(load_document(str(path), "faults file"))


class EndpointModel:
    """What each endpoint looks like (an ``EndpointState``) at a given time."""

    def __init__(
        self,
        latencies: Sequence[Latency],
        error_ps: Sequence[float],
        faults: Sequence[Fault] = (),
        starting: Sequence[EndpointState] | None = None,
    ) -> None:
        if len(latencies) != len(error_ps):
            raise FieldError("errors", "one probability per endpoint is needed")
        self.endpoints = len(latencies)
        for fault in faults:
            bad = [i for i in fault.endpoints or () if i >= self.endpoints]
            if bad:
                raise FieldError(
                    "faults", f"endpoint {bad[0]} does not exist (there are {self.endpoints})"
                )
        if starting is None:
            starting = [EndpointState(lat, p) for lat, p in zip(latencies, error_ps, strict=True)]
        # Per endpoint: change times and the state from each time on.
        self._times: list[list[int]] = []
        self._states: list[list[EndpointState]] = []
        for i in range(self.endpoints):
            times, states = [0], [starting[i]]
            for fault in sorted(faults, key=lambda f: f.at_ns):
                if fault.endpoints is None or i in fault.endpoints:
                    times.append(fault.at_ns)
                    states.append(fault.applied(states[-1]))
            self._times.append(times)
            self._states.append(states)

    @classmethod
    def of(cls, starting: Sequence[EndpointState], faults: Sequence[Fault] = ()) -> EndpointModel:
        """A model from each endpoint's starting state."""
        return cls([s.latency for s in starting], [s.error_p for s in starting], faults, starting)

    def at(self, endpoint: int, elapsed_ns: int) -> EndpointState:
        """Endpoint ``endpoint``'s state ``elapsed_ns`` after the origin."""
        k = bisect.bisect_right(self._times[endpoint], elapsed_ns) - 1
        return self._states[endpoint][max(k, 0)]  # before the origin: the starting state


class FaultClock:
    """Where a service is in its fault schedule: the endpoint model in force, and the
    schedule's origin (monotonic ns; by default when the service started).

    A run's driver moves the origin to each target's load start (``POST /clock``), so a
    fault ``at: 10s`` lands 10 s into every target's load. ``model`` is replaced whole,
    so a request sees the old schedule or the new one, never a mix.
    """

    def __init__(self, model: EndpointModel) -> None:
        self.model = model
        self.origin_ns = time.monotonic_ns()

    def state(self, endpoint: int) -> EndpointState:
        """Endpoint ``endpoint``'s state now."""
        return self.model.at(endpoint, time.monotonic_ns() - self.origin_ns)

    def restart(self) -> None:
        """The schedule starts now."""
        self.origin_ns = time.monotonic_ns()

    def start_at(self, epoch_ns: int) -> None:
        """The schedule starts (or started) at epoch time ``epoch_ns``."""
        self.origin_ns = time.monotonic_ns() + (epoch_ns - time.time_ns())
