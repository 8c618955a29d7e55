"""What a generator tells the driver: its progress once a second, its summary at the end.

Frozen records that cross the Ray boundary as they are (pickled), so the driver reads
fields, never string keys. Every field is given: a message never says something by
leaving it out. ``Counts`` is what both have in common, and what the
driver adds up over a target's generators.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# A generator hands its rows over (and its progress moves) at least this often.
BATCH_INTERVAL_NS = 1_000_000_000


@dataclass(frozen=True)
class Counts:
    """Requests recorded (rows), sent, ok, and failed by error kind (kinds with none
    left out)."""

    rows: int
    sent: int
    ok: int
    errors: Mapping[str, int]

    @classmethod
    def total(cls, parts: Iterable[Counts]) -> Counts:
        """The sum of ``parts``."""
        rows = sent = ok = 0
        errors: dict[str, int] = {}
        for part in parts:
            rows, sent, ok = rows + part.rows, sent + part.sent, ok + part.ok
            for kind, n in part.errors.items():
                errors[kind] = errors.get(kind, 0) + n
        return cls(rows, sent, ok, errors)


@dataclass(frozen=True)
class Window:
    """The last closed batch of a generator: its rows, ok rows and their p99 latency."""

    rows: int
    ok: int
    p99_ms: float | None  # None: no ok row in it

    @classmethod
    def empty(cls) -> Window:
        """The window before any batch closed."""
        return cls(0, 0, None)


@dataclass(frozen=True)
class Progress(Counts):
    """A running generator's counters so far, and its last closed window."""

    worker: int
    target: str
    node: str
    elapsed_s: float  # since its load started
    in_flight: int  # requests on the wire now
    waiting: int  # requests due, waiting for a connection
    window: Window


@dataclass(frozen=True)
class Summary(Counts):
    """How a generator's run ended: its counts, and the p99 of its send lag."""

    worker: int
    target: str
    node: str
    send_lag_p99_ms: float | None  # None: it sent nothing
    closed_loop: bool
    started_ns: int | None
    ended_ns: int | None
    stopped: bool  # it was asked to stop before its schedule's end
    checks: Mapping[str, int]  # a session target's failed checks: "step: check" -> times
