"""Following one target's generators to their end: progress once a second, each
generator's end recorded in the manifest as it happens, and an objective's ``abort``.

A generator that returns a summary ended (``completed``, or ``stopped`` when asked);
one whose task raised ``failed``; one whose process or node died was ``lost``, and the
window of its schedule whose rows may be missing is recorded.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import replace

import ray

from blastradius.analysis.table import error_counts
from blastradius.cluster.abort import Guard
from blastradius.cluster.joining import first_line
from blastradius.cluster.manifest import Manifest, iso
from blastradius.cluster.status import missing_window
from blastradius.workers.messages import Counts, Progress, Summary
from blastradius.workers.run_record import Aborted, GeneratorState, Missing

Log = Callable[[str], None]


class Watch:
    """Follows one target's generators to their end: progress, summaries, losses."""

    def __init__(
        self,
        name: str,
        actors: list,
        refs: list,
        manifest: Manifest,
        logs: tuple[Log, Log],
        window_ns: tuple[int, int | None],
    ) -> None:
        """``logs``: where event lines go, and where progress lines go; ``window_ns``:
        the load's start and planned end (None: none planned)."""
        self.name, self.actors, self.manifest = name, actors, manifest
        self.log, self.progress = logs
        self.start_ns, self.end_ns = window_ns
        self.pending = {ref: worker for worker, ref in enumerate(refs)}
        # Each generator's last progress, and its summary once it ended: totals never
        # go backwards.
        self.latest: dict[int, Progress] = {}
        self.finals: dict[int, Summary] = {}
        self.last_sent, self.last_time = 0, time.monotonic()
        self.guard: Guard | None = None  # slo abort: set when the objectives ask for it

    def until_done(self, interval_s: float = 1.0) -> None:
        while self.pending:
            done, _ = ray.wait(
                list(self.pending), num_returns=len(self.pending), timeout=interval_s
            )
            for ref in done:
                self._ended(self.pending.pop(ref), ref)
            if self.pending:
                self._progress()

    def stop(self) -> None:
        """Ask every running generator to stop, then wait for them (bounded)."""
        for worker in self.pending.values():
            with contextlib.suppress(ray.exceptions.RayError):
                self.actors[worker].stop.remote()
        deadline = time.monotonic() + 30
        while self.pending and time.monotonic() < deadline:
            done, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=1.0)
            for ref in done:
                self._ended(self.pending.pop(ref), ref, state=GeneratorState.STOPPED)

    def _ended(
        self, worker: int, ref: ray.ObjectRef, state: GeneratorState = GeneratorState.COMPLETED
    ) -> None:
        entry = self.manifest.target(self.name).generators[worker]
        try:
            summary: Summary = ray.get(ref)
        except ray.exceptions.RayError as exc:
            ended_ns = time.time_ns()
            missing_from, missing_to = missing_window(self.start_ns, ended_ns, self.end_ns)
            # RayTaskError: the generator raised (its output failed, say): it failed.
            # Anything else: its process or node died: it was lost.
            failed = isinstance(exc, ray.exceptions.RayTaskError)
            if isinstance(exc, ray.exceptions.RayTaskError):
                cause = exc.cause if isinstance(exc.cause, BaseException) else exc
                error = f"{type(cause).__name__}: {first_line(cause)}"
            else:
                error = first_line(exc)
            entry = replace(
                entry,
                state=GeneratorState.FAILED if failed else GeneratorState.LOST,
                lost_at=iso(ended_ns),
                lost_at_ns=ended_ns,
                error=error,
                # Rows up to the last batch this generator handed over are on disk;
                # its share of the schedule from then on is missing.
                missing=Missing(iso(missing_from), iso(missing_to)),
            )
            self.log(
                f"{self.name}: generator {worker} on node {entry.node[:12]} "
                f"{entry.fate} ({error[:120]})"
            )
        else:
            entry = replace(
                entry,
                state=state,
                rows=summary.rows,
                ok=summary.ok,
                errors=dict(summary.errors),
                send_lag_p99_ms=summary.send_lag_p99_ms,
                checks=dict(summary.checks) or None,
            )
            self.finals[worker] = summary
        self.manifest.set_target(self.name, self.manifest.target(self.name).with_generator(entry))
        self.manifest.write()

    def _progress(self) -> None:
        calls = {self.actors[w].progress.remote(): w for w in self.pending.values()}
        ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=0.5)
        for ref in ready:
            with contextlib.suppress(ray.exceptions.RayError):
                report = ray.get(ref)
                if report:
                    self.latest[calls[ref]] = report
        running = [p for w, p in self.latest.items() if w not in self.finals]
        total = Counts.total([*running, *self.finals.values()])
        if total.sent:
            elapsed = max((p.elapsed_s for p in self.latest.values()), default=0.0)
            line = progress_line(
                self.name,
                total,
                elapsed,
                running,
                self._rate(total.sent),
                (len(self.pending), len(self.actors)),
            )
            self.progress(line)
        if self.guard is not None and (self.latest or self.finals):
            self._guard(self.guard, total)

    def _guard(self, guard: Guard, total: Counts) -> None:
        """Stop the load if an objective can no longer be met (``slo: {abort: true}``)."""
        now_ns = time.time_ns()
        reason = guard.observe(
            (now_ns - self.start_ns) / 1e9, total.rows, total.ok, dict(total.errors)
        )
        if reason is None:
            return
        self.guard = None  # once
        self.log(f"{self.name}: stopping its load early: {reason}")
        self.manifest.update_target(self.name, aborted=Aborted(iso(now_ns), reason))
        self.manifest.write()
        self.stop()

    def _rate(self, sent: int) -> float:
        now = time.monotonic()
        rate = (sent - self.last_sent) / max(now - self.last_time, 1e-9)
        self.last_sent, self.last_time = sent, now
        return max(rate, 0.0)


def progress_line(
    name: str,
    total: Counts,
    elapsed_s: float,
    running: list[Progress],
    rate: float,
    generators: tuple[int, int],
) -> str:
    """One progress line for a target: the counts of its generators (a generator that
    ended counts its summary, so totals never go backwards), the time since its load
    started, the worst p99 of the running generators' last windows, the send rate, and
    ``generators`` (running, of how many)."""
    p99s = [p.window.p99_ms for p in running if p.window.p99_ms is not None]
    ok_text = f"{100 * total.ok / total.rows:5.1f}%" if total.rows else "    -"
    p99_text = f"{max(p99s):.0f}ms" if p99s else "-"
    return (
        f"{name}: {elapsed_s:5.1f}s  sent {total.sent:>8}  ok {ok_text}  {rate:7.0f} req/s  "
        f"p99(1s) {p99_text:>7}  errors {error_counts(dict(total.errors))}  "
        f"generators {generators[0]}/{generators[1]}"
    )
