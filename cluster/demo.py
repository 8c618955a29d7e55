"""``blastradius demo``: the blast-radius experiment, end to end, on the embedded local Ray.

It runs ``scenarios/quick/30s.yaml`` (``--full``: ``scenarios/essay/30s.yaml``,
the essay's sizes): one dependency endpoint of ten takes 30 s, and the same
open-loop load goes through a blocking service (a fixed thread pool) and an
async one. It prints a comparison table (availability overall, on the healthy
endpoints and on the slow ones, goodput, p50/p99, errors by kind, and the
concurrency Little's law says the load needs against the threads or pooled
connections there were), writes the HTML report, and prints its path.
``--sessions`` runs the same as sessions of 5 calls each (``30s-sessions.yaml``),
and the table adds the share of sessions that completed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from blastradius.analysis.table import Column, error_counts, text_table
from blastradius.cluster.scenario import Scenario, Target, load_scenario
from blastradius.cluster.shipped import shipped
from blastradius.targets.h2c import MAX_STREAMS
from blastradius.workers.run_record import RunStatus
from blastradius.workers.schedule import Schedule

QUICK = "quick/30s"  # shipped scenarios (cluster/shipped.py)
FULL = "essay/30s"
SESSIONS = "-sessions"  # the same, each session making 5 calls

Log = Callable[[str], None]


@dataclass(frozen=True)
class DemoOutcome:
    """Where the demo's run and report are, how the run ended, and the table printed."""

    run_dir: str
    status: RunStatus
    report: Path | None
    table: tuple[str, ...]


def peak_rate_rps(scenario: Scenario) -> float:
    """The highest rate the scenario's schedule reaches (0 for a closed loop)."""
    shape = scenario.load.shape
    if not isinstance(shape, Schedule):
        return 0.0
    return max(max(s.start_rps, s.end_rps) for s in shape.stages)


def _phases(scenario: Scenario) -> list[tuple]:
    """The dependency's endpoint latencies in each phase of its fault schedule."""
    config = None if scenario.dependency is None else scenario.dependency.config
    if config is None:
        return []
    model = config.model()
    times = [0, *(f.at_ns for f in config.faults)]
    return [tuple(model.at(i, t).latency for i in range(model.endpoints)) for t in times]


def concurrency_needed(scenario: Scenario, target: Target) -> float | None:
    """Little's law: requests in flight = arrival rate x time each one is held.

    A request holds a thread (or a pooled connection) for its dependency call,
    which ends at the endpoint's latency or at the target's dependency timeout,
    whichever comes first. Endpoints are cycled evenly (or drawn evenly, for a
    target's sessions), so the mean is over them. With a fault schedule, the worst
    phase counts. A target taking sessions gets ``session_calls`` requests from each.
    """
    phases = _phases(scenario)
    if not phases:
        return None
    cap_ns = None if target.dependency_timeout_s is None else int(target.dependency_timeout_s * 1e9)
    held_s = max(np.mean([lat.mean_ns(cap_ns) for lat in phase]) for phase in phases) / 1e9
    return peak_rate_rps(scenario) * max(1, target.session_calls) * float(held_s)


def capacity(target: Target) -> str:
    """The concurrency a launched target has: its threads, its pool (of connections, or
    over HTTP/2 of streams), or no limit."""
    if target.kind == "blocking":
        return f"{target.threads} threads"
    if target.max_connections and target.dependency_http == "2":
        streams = target.max_connections * MAX_STREAMS
        return f"{target.max_connections} conns x {MAX_STREAMS} streams = {streams}"
    if target.max_connections:
        return f"{target.max_connections} conns"
    return "no limit"


def slow_endpoints(scenario: Scenario) -> tuple[int, ...]:
    """Endpoints whose mean latency is, at some time, past the client deadline."""
    timeout_ns = scenario.load.timeout_ns
    slow = {
        i
        for phase in _phases(scenario)
        for i, latency in enumerate(phase)
        if latency.mean_ns() > timeout_ns
    }
    return tuple(sorted(slow))


def comparison(scenario: Scenario, rows: pd.DataFrame) -> list[dict]:
    """One entry per target: its SUMMARY figures, availability on the healthy and on the
    slow endpoints, and the concurrency Little's law needs against what it had.

    A session target's figures are over the calls its sessions sent (its ``skipped``
    rows are counted in its errors only), and ``sessions`` is the share of its
    sessions that completed (None for a target without sessions)."""
    from blastradius.analysis import summary
    from blastradius.analysis.sessions import frame_figures

    every = summary(rows)
    sent = rows[rows["error"] != "skipped"]
    summaries = summary(sent)
    part = np.where(sent["endpoint"].isin(slow_endpoints(scenario)).to_numpy(), "slow", "healthy")
    by_part = summary(sent.assign(part=part), by=["target", "part"])
    entries = []
    for target in scenario.targets:
        if target.name not in summaries:
            continue
        sessions = frame_figures(rows[rows["target"] == target.name])
        entries.append(
            {
                "target": target.name,
                **summaries[target.name],
                "errors": every[target.name]["errors"],
                "healthy": (by_part.get((target.name, "healthy")) or {}).get("availability"),
                "slow": (by_part.get((target.name, "slow")) or {}).get("availability"),
                "sessions": None if sessions is None else sessions["session_availability"],
                "needed": concurrency_needed(scenario, target),
                "capacity": capacity(target),
            }
        )
    return entries


def comparison_table(scenario: Scenario, rows: pd.DataFrame) -> list[str]:
    """The demo's table: one line per target, from the rows (see the module docstring)."""
    entries = comparison(scenario, rows)
    sessions = any(c["sessions"] is not None for c in entries)
    columns = [
        Column("target", 16, left=True),
        *(Column(h, w) for h, w in (("avail", 7), ("healthy", 9), ("slow", 7))),
        *([Column("sessions", 10)] if sessions else []),
        Column("goodput/s", 11),
        Column("p50 ms", 9),
        Column("p99 ms", 9),
        Column("in flight needed / there", 26, left=True, gap=2),
        Column("errors", left=True),
    ]
    lines = []
    for c in entries:
        little = "-" if c["needed"] is None else f"{c['needed']:,.0f} / {c['capacity']}"
        lines.append(
            [
                str(c["target"]),
                *(_num(c[key], ".3f") for key in ("availability", "healthy", "slow")),
                *([_num(c["sessions"], ".3f")] if sessions else []),
                _num(c["goodput_rps"], ",.1f"),
                _num(c["p50_ms"], ",.0f"),
                _num(c["p99_ms"], ",.0f"),
                little,
                error_counts(c["errors"]),
            ]
        )
    return text_table(columns, lines)


def _num(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def explain(scenario: Scenario) -> list[str]:
    """What the table shows, in the scenario's own numbers."""
    rate = peak_rate_rps(scenario)
    slow = slow_endpoints(scenario)
    endpoints = 0 if scenario.dependency is None else scenario.dependency.endpoints
    calls = max((t.session_calls for t in scenario.targets), default=0)
    arrivals = f"{rate:g} sessions/s of {calls} calls" if calls else f"{rate:g} requests/s"
    sessions = [
        f"sessions: the share of sessions whose {calls} calls, each to an endpoint drawn at",
        "random, all succeeded. A failed call ends its session: its later calls are",
        "skipped (an error kind of their own), and avail, healthy and slow count the",
        "calls sent.",
    ]
    return [
        f"{arrivals} over {endpoints} dependency endpoints, "
        f"endpoint {','.join(map(str, slow)) or '-'} (at its worst) slower than the "
        f"{scenario.load.timeout_ns / 1e9:g} s client deadline.",
        "healthy/slow: availability on the healthy endpoints and on the slow one.",
        *(sessions if calls else []),
        "in flight needed: Little's law, rate x mean time a request holds a thread or a",
        "connection on its dependency call. The blocking service has fewer threads than",
        "that, so they all end up waiting on the slow endpoint and the healthy endpoints",
        "fail too: the blast radius. The async service holds its waiting calls without",
        "threads and loses only the slow endpoint's share.",
    ]


def scenario_name(full: bool = False, sessions: bool = False) -> str:
    """The demo's shipped scenario: the quick or the essay's sizes, of single requests
    or of sessions."""
    return (FULL if full else QUICK) + (SESSIONS if sessions else "")


def demo_scenario(name: str, overrides: Sequence[str]) -> Scenario:
    """The demo's shipped scenario (``scenario_name``), with ``--set`` overrides.

    ``ValueError`` for a bad override or a missing file.
    """
    path = shipped(name)
    if path is None:
        raise ValueError(f"{name}: the demo's scenario is missing from this installation")
    return load_scenario(path, overrides)


def run_demo(
    scenario: Scenario,
    out: str,
    log: Log,
    progress: Log | None = None,
) -> DemoOutcome:
    """Run the experiment on an embedded Ray cluster, print the table, write the report."""
    from blastradius.analysis import load, summary
    from blastradius.analysis.report import write_report
    from blastradius.analysis.table import warnings
    from blastradius.cluster import driver

    outcome = driver.run(scenario, out, None, log, progress)
    runs = load(outcome.run_dir)
    if runs.rows.empty:
        return DemoOutcome(outcome.run_dir, outcome.status, None, ())
    table = comparison_table(scenario, runs.rows)
    log("")
    for line in (*table, "", *explain(scenario)):
        log(line)
    for line in warnings(runs, summary(runs.rows)):
        log(line)
    report = write_report([outcome.run_dir], outcome.run_dir)
    return DemoOutcome(outcome.run_dir, outcome.status, report.html, tuple(table))
