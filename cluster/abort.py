"""``slo: {abort: true}``: when to stop a target's load early, because an objective can
no longer be met (pure; the driver feeds it its generators' progress counts).

Two rules, on the counts the generators report about once a second:

- a budget spent: the failures so far are more than ``1 - availability`` of the
  requests planned (the schedule's exact count), or the errors of a kind more than
  its share of them: the whole-run objective cannot be met whatever comes next;
- with a window: over the last window of that length (by when requests ended), at
  least ``MIN_WINDOW_ROWS`` requests ended and their availability is under the floor:
  the per-window objective is broken.

Latency objectives are judged at the end only: the counts say nothing of percentiles.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from blastradius.workers.run_record import ERROR_PREFIX, Objectives

MIN_WINDOW_ROWS = 20


@dataclass
class Guard:
    """Watches one target's counts against its objectives."""

    objectives: Objectives
    planned: int | None  # the target's requests in all, None when not known (closed loop)
    history: deque = field(default_factory=lambda: deque([(0.0, 0, 0)]))  # (t_s, rows, ok)

    def observe(self, t_s: float, rows: int, ok: int, errors: Mapping[str, int]) -> str | None:
        """Why the load should stop now (one line), or None. ``t_s``: seconds since the
        load started; the counts are the target's totals so far."""
        floor = self.objectives.get("availability")
        if self.planned:
            if floor is not None and rows - ok > (1 - floor) * self.planned:
                return (
                    f"availability >= {floor:g} can no longer be met: {rows - ok} of "
                    f"{self.planned} planned requests failed already"
                )
            for name, share in self.objectives.thresholds:
                if name.startswith(ERROR_PREFIX):
                    kind = name[len(ERROR_PREFIX) :]
                    if errors.get(kind, 0) > share * self.planned:
                        return (
                            f"{name} <= {share:g} can no longer be met: {errors[kind]} of "
                            f"{self.planned} planned requests ended in {kind} already"
                        )
        window_ns = self.objectives.window_ns
        if floor is None or window_ns is None:
            return None
        window_s = window_ns / 1e9
        self.history.append((t_s, rows, ok))
        while len(self.history) > 1 and self.history[1][0] <= t_s - window_s:
            self.history.popleft()
        then, rows_then, ok_then = self.history[0]
        if t_s - then < window_s:
            return None  # not a whole window yet
        ended, good = rows - rows_then, ok - ok_then
        if ended >= MIN_WINDOW_ROWS and good / ended < floor:
            return (
                f"availability per {window_s:g}s >= {floor:g} is broken: "
                f"{good / ended:.4f} over the last {t_s - then:.0f}s"
            )
        return None
