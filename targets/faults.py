"""Fault schedules: an endpoint's latency or error rate changing at given times.

A schedule is a list of events, from a YAML/JSON file or a scenario block::

    - at: 10s            # time since the origin (a bare number is seconds): the
                         # dependency's start, or the time POST /clock set
      endpoint: 9        # an index, a list of indices, or "all"
      latency: 30s       # optional: a latency VALUE (bare number = ms, distributions allowed)
      errors: 0.5        # optional: probability of HTTP 500

An event holds until a later event changes the same endpoint (so recovery is
another event). ``EndpointModel`` answers, purely, what an endpoint looks like
at a given time.
"""

from __future__ import annotations

import bisect
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from blastradius.targets.spec import (
    Latency,
    format_duration_ns,
    parse_duration_ns,
    parse_latency_value,
)

_EVENT_KEYS = {"at", "endpoint", "latency", "errors"}


@dataclass(frozen=True, slots=True)
class Fault:
    """From ``at_ns`` on, ``endpoints`` take ``latency`` and/or fail with ``error_p``."""

    at_ns: int
    endpoints: tuple[int, ...] | None  # None: every endpoint
    latency: Latency | None = None
    error_p: float | None = None

    def __post_init__(self) -> None:
        if self.at_ns < 0:
            raise ValueError("at: must not be negative")
        if self.latency is None and self.error_p is None:
            raise ValueError("give latency or errors (or both)")
        if self.error_p is not None and not 0.0 <= self.error_p <= 1.0:
            raise ValueError("errors: probability outside [0, 1]")
        if self.endpoints is not None and any(i < 0 for i in self.endpoints):
            raise ValueError("endpoint: indices must not be negative")

    def to_event(self) -> dict:
        """This fault as a schedule event (``parse_fault`` reads it back equal)."""
        event: dict = {
            "at": format_duration_ns(self.at_ns),
            "endpoint": "all" if self.endpoints is None else list(self.endpoints),
        }
        if self.latency is not None:
            event["latency"] = str(self.latency)
        if self.error_p is not None:
            event["errors"] = self.error_p
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


def _parse_errors(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("errors: expected a probability in [0, 1]")
    return float(value)


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
    errors = event.get("errors")
    return Fault(
        at_ns=_parse_at(event["at"]),
        endpoints=_parse_endpoints(event["endpoint"]),
        latency=None if latency is None else parse_latency_value(str(latency)),
        error_p=None if errors is None else _parse_errors(errors),
    )


def parse_faults(events: object) -> tuple[Fault, ...]:
    """A list of events (or ``{"faults": [...]}``) into faults sorted by time."""
    if isinstance(events, Mapping) and set(events) == {"faults"}:
        events = events["faults"]
    if events is None:
        return ()
    if not isinstance(events, Sequence) or isinstance(events, str):
        raise ValueError("faults: expected a list of events")
    faults = []
    for index, event in enumerate(events):
        try:
            faults.append(parse_fault(event))
        except ValueError as exc:
            raise ValueError(f"faults[{index}]: {exc}") from None
    return tuple(sorted(faults, key=lambda f: f.at_ns))


def format_faults(faults: Sequence[Fault]) -> str:
    """A schedule as JSON, the form a launched dependency reads on its stdin."""
    return json.dumps([fault.to_event() for fault in faults])


def load_faults(path: str | Path) -> tuple[Fault, ...]:
    """Read a fault schedule from a YAML or JSON file (``-``: from stdin)."""
    path = Path(path)
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise ValueError(f"faults file {str(path)!r}: {exc.strerror}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).splitlines()[0]
        raise ValueError(f"faults file {str(path)!r}: not valid: {first_line}") from None
    return parse_faults(data)


class EndpointModel:
    """What each endpoint looks like (latency, error probability) at a given time."""

    def __init__(
        self,
        latencies: Sequence[Latency],
        error_ps: Sequence[float],
        faults: Sequence[Fault] = (),
    ) -> None:
        if len(latencies) != len(error_ps):
            raise ValueError("errors: one probability per endpoint is needed")
        self.endpoints = len(latencies)
        for fault in faults:
            bad = [i for i in fault.endpoints or () if i >= self.endpoints]
            if bad:
                raise ValueError(
                    f"faults: endpoint {bad[0]} does not exist (there are {self.endpoints})"
                )
        # Per endpoint: change times and the state from each time on.
        self._times: list[list[int]] = []
        self._states: list[list[tuple[Latency, float]]] = []
        for i in range(self.endpoints):
            times, states = [0], [(latencies[i], error_ps[i])]
            for fault in sorted(faults, key=lambda f: f.at_ns):
                if fault.endpoints is None or i in fault.endpoints:
                    latency, error_p = states[-1]
                    times.append(fault.at_ns)
                    states.append(
                        (
                            latency if fault.latency is None else fault.latency,
                            error_p if fault.error_p is None else fault.error_p,
                        )
                    )
            self._times.append(times)
            self._states.append(states)

    def at(self, endpoint: int, elapsed_ns: int) -> tuple[Latency, float]:
        """Endpoint ``endpoint``'s (latency, error probability) ``elapsed_ns`` after start."""
        k = bisect.bisect_right(self._times[endpoint], elapsed_ns) - 1
        return self._states[endpoint][max(k, 0)]  # before the origin: the starting state
