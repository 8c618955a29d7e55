"""What a generator tells the driver: its progress once a second, its summary at the end.

Frozen records that cross the Ray boundary as they are (pickled), so the driver reads
fields, never string keys. ``Counts`` is what both have in common, and what the
driver adds up over a target's generators.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# A generator hands its rows over (and its progress moves) at least this often.
BATCH_INTERVAL_NS = 1_000_000_000


@dataclass(frozen=True)
class Counts:
    """Requests recorded (rows), sent, ok, and failed by error kind (kinds with none
    left out)."""

    rows: int = 0
    sent: int = 0
    ok: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)

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

    rows: int = 0
    ok: int = 0
    p99_ms: float | None = None  # None: no ok row in it


@dataclass(frozen=True)
class Progress(Counts):
    """A running generator's counters so far, and its last closed window."""

    worker: int = 0
    target: str = ""
    node: str = ""
    elapsed_s: float = 0.0  # since its load started
    in_flight: int = 0  # requests on the wire now
    waiting: int = 0  # requests due, waiting for a connection
    window: Window = field(default_factory=Window)


@dataclass(frozen=True)
class Summary(Counts):
    """How a generator's run ended: its counts, and the p99 of its send lag."""

    worker: int = 0
    target: str = ""
    node: str = ""
    send_lag_p99_ms: float | None = None  # None: it sent nothing
    closed_loop: bool = False
    started_ns: int | None = None
    ended_ns: int | None = None
    stopped: bool = False  # it was asked to stop before its schedule's end
