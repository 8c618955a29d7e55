"""Objectives (``slo:``) evaluated exactly over a run's rows: pure, as the summaries are.

An objective is a threshold on a figure of the summary (DESIGN.md): ``availability``
and ``goodput_rps`` at least; the latency percentiles ``p50`` ... ``p9999``, ``max``
and ``service_p99`` at most, in ms; ``errors.<kind>`` at most, as a share of the
requests. With a window, availability and the percentiles must also hold in every
window of intended time of that length (windows as in ``stats.timeline``); a window
without an ok request has no percentiles and is judged by its availability alone.

A figure that cannot be measured (no ok request, so no p99) does not meet its
objective: the run did not show it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from blastradius.analysis import stats
from blastradius.analysis.load import Runs
from blastradius.analysis.table import Column, text_table
from blastradius.workers.run_record import (
    AT_LEAST,
    ERROR_PREFIX,
    LATENCY,
    Objectives,
    RunRecord,
    effective,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["AT_LEAST", "ERROR_PREFIX", "LATENCY", "Objectives", "Verdict", "check", "judge"]

WINDOWED = ("availability", *LATENCY)
_SUMMARY_KEY = {
    "availability": "availability",
    "goodput_rps": "goodput_rps",
    **{name: f"{name}_ms" for name in LATENCY},
    "session_availability": "session_availability",  # a session target's summary only
    "session_p99": "session_p99_ms",
}
_QUANTILE = {**{name: stats.QUANTILES[f"{name}_ms"] for name in LATENCY[:5]}, "max": 1.0}


@dataclass(frozen=True)
class Verdict:
    """One objective of one target: met or not, by how much, and in which windows not."""

    target: str
    objective: str  # "p99", "errors.timeout"; "p99 per 10s" for a windowed one
    threshold: float
    measured: float | None  # the worst window's, for a windowed one
    met: bool
    breaches: tuple[float, ...] = ()  # start of each window that breached, s from the start
    window_s: float | None = None  # a windowed objective's window

    @property
    def at_least(self) -> bool:
        """Whether the threshold is a floor (else a ceiling)."""
        return self.objective.split(" ")[0] in AT_LEAST

    @property
    def margin(self) -> float | None:
        """Room left, in the objective's unit: positive when met, negative when not."""
        if self.measured is None:
            return None
        return self.measured - self.threshold if self.at_least else self.threshold - self.measured

    def to_json(self) -> dict:
        """As ``check --json`` prints it."""
        return {
            "target": self.target,
            "objective": self.objective,
            "threshold": self.threshold,
            "measured": self.measured,
            "margin": self.margin,
            "met": self.met,
            "window_s": self.window_s,
            "breaches_s": list(self.breaches),
        }


def _meets(name: str, threshold: float, measured: float | None) -> bool:
    if measured is None or math.isnan(measured):
        return False
    return bool(measured >= threshold if name in AT_LEAST else measured <= threshold)


def _measured(name: str, summary: Mapping) -> float | None:
    if name.startswith(ERROR_PREFIX):
        kind = name[len(ERROR_PREFIX) :]
        if not summary["requests"]:
            return None
        return summary["errors"].get(kind, 0) / summary["requests"]
    value = summary.get(_SUMMARY_KEY[name])  # a target of no session has no session figure
    return None if value is None else float(value)


def window_columns(objectives: Objectives) -> tuple[dict[str, float], dict[str, float]]:
    """The timeline columns a windowed objective needs besides availability: latency
    percentiles and service time ones (``stats.timeline``'s ``quantiles``, ``service``)."""
    names = [n for n, _ in objectives.thresholds if n in LATENCY and n != "service_p99"]
    quantiles = {f"{n}_ms": _QUANTILE[n] for n in names}
    service = {"service_p99_ms": 0.99} if objectives.get("service_p99") is not None else {}
    return quantiles, service


def window_figures(
    frame: pd.DataFrame, objectives: Objectives, start_ns: int | None = None
) -> pd.DataFrame:
    """Per target and window (``objectives.window_ns``, from ``start_ns``, default the
    first intended time): availability and the windowed percentiles the objectives
    name (ms), with the window's start ``t_s``."""
    if objectives.window_ns is None:
        raise ValueError("window figures need objectives with a window")
    quantiles, service = window_columns(objectives)
    return stats.timeline(
        frame, objectives.window_ns, start_ns, quantiles=quantiles, service=service
    )


class TargetFigures(Protocol):
    """A run's figures, target by target: from its loaded rows (``RowFigures``) or from
    its files (``analysis.scan.FileFigures``)."""

    def targets(self) -> list[str]:
        """The targets that have rows."""
        ...

    def summary(self, target: str) -> dict | None:
        """The target's SUMMARY, None when it has no rows."""
        ...

    def windows(self, target: str, objectives: Objectives, start_ns: int | None) -> pd.DataFrame:
        """``window_figures`` of the target's rows."""
        ...


@dataclass(frozen=True)
class RowFigures:
    """A run's figures from its loaded rows."""

    rows: pd.DataFrame

    def targets(self) -> list[str]:
        """The targets that have rows."""
        return self.rows["target"].astype(str).unique().tolist()

    def _of(self, target: str) -> pd.DataFrame:
        frame = self.rows[self.rows["target"] == target]
        return frame.assign(target=frame["target"].astype(str))

    def summary(self, target: str) -> dict | None:
        """The target's SUMMARY, None when it has no rows (a session target's with its
        session figures)."""
        frame = self._of(target)
        if frame.empty:
            return None
        from blastradius.analysis.sessions import frame_figures

        return stats.summarize(frame) | session_summary(frame_figures(frame))

    def windows(self, target: str, objectives: Objectives, start_ns: int | None) -> pd.DataFrame:
        """``window_figures`` of the target's rows."""
        return window_figures(self._of(target), objectives, start_ns)


def session_summary(figures: dict | None) -> dict:
    """The figures session objectives are judged on, from ``analysis.sessions``' (none
    for a target of no session)."""
    if figures is None:
        return {}
    return {
        "session_availability": figures["session_availability"],
        "session_p99_ms": figures["duration"]["p99_ms"],
    }


def evaluate(
    target: str,
    objectives: Objectives,
    summary: Mapping,
    windows: pd.DataFrame | None = None,
) -> list[Verdict]:
    """Every objective of a target, over its whole run, then per window if a window is
    set (``windows``: ``window_figures`` of the target's rows)."""
    verdicts = []
    for name, threshold in objectives.thresholds:
        measured = _measured(name, summary)
        verdicts.append(
            Verdict(target, name, threshold, measured, _meets(name, threshold, measured))
        )
    if objectives.window_ns is None or windows is None:
        return verdicts
    mine = windows[windows["target"] == target]
    label = f"per {_seconds(objectives.window_ns)}"
    for name, threshold in objectives.thresholds:
        if name not in WINDOWED:
            continue
        values = mine[_SUMMARY_KEY[name]].to_numpy(dtype=float)
        judged = ~np.isnan(values)  # a window without an ok request has no percentiles
        starts = mine["t_s"].to_numpy(dtype=float)
        breached = [
            float(t)
            for t, v, j in zip(starts, values, judged, strict=True)
            if j and not _meets(name, threshold, v)
        ]
        figures = values[judged]
        worst = None
        if len(figures):
            worst = float(figures.min() if name in AT_LEAST else figures.max())
        verdicts.append(
            Verdict(
                target,
                f"{name} {label}",
                threshold,
                worst,
                not breached and worst is not None,
                tuple(breached),
                objectives.window_ns / 1e9,
            )
        )
    return verdicts


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:g}s"


def met(verdicts: list[Verdict]) -> bool:
    """Whether every objective was met."""
    return all(v.met for v in verdicts)


def format_value(name: str, value: float | None) -> str:
    """A figure or threshold of objective ``name`` in its unit (``312.4ms``, ``0.9990``)."""
    if value is None:
        return "-"
    base = name.split(" ")[0]
    if base in ("availability", "session_availability"):
        return f"{value:.4f}"
    if base.startswith(ERROR_PREFIX):
        return f"{value:.3%}"
    if base == "goodput_rps":
        return f"{value:.1f}/s"
    return f"{value:.1f}ms" if value >= 1 else f"{value:.3g}ms"


def describe(verdict: Verdict) -> str:
    """``p99 <= 300.0ms``: the objective as a sentence's subject."""
    sign = ">=" if verdict.at_least else "<="
    return f"{verdict.objective} {sign} {format_value(verdict.objective, verdict.threshold)}"


def verdict_table(verdicts: list[Verdict]) -> list[str]:
    """One line per objective: target, objective, measured, margin, met or not."""
    columns = [
        Column("target", 12, left=True),
        Column("objective", 34, left=True),
        Column("measured", 12),
        Column("margin", 12),
        Column("result", left=True, gap=2),
    ]
    rows = []
    for v in verdicts:
        margin = v.margin
        margin_text = "-" if margin is None else format_value(v.objective, abs(margin))
        if margin is not None and margin < 0:
            margin_text = "-" + margin_text
        result = "met" if v.met else "NOT MET"
        if v.breaches:
            result += f" (in {len(v.breaches)} windows, first at {v.breaches[0]:g}s)"
        measured = format_value(v.objective, v.measured)
        rows.append([str(v.target), describe(v), measured, margin_text, result])
    return text_table(columns, rows)


def run_objectives(manifest: RunRecord) -> dict[str, Objectives]:
    """The objectives a run was given (``run.json``'s ``objectives``, by target)."""
    return dict(manifest.objectives)


def judge(
    runs: Runs,
    given: tuple[Objectives | None, Mapping[str, Objectives]] | None = None,
    figures: Callable[[str], TargetFigures] | None = None,
) -> dict[str, list[Verdict]]:
    """Each run's verdicts, on its own objectives (run.json's), or on ``given`` ones
    (common, then by target, as an objectives file has them) applied to every target
    the run has (in run.json or in its rows). A run without objectives is left out.
    ``figures`` gives a run's figures by run id (default: from ``runs.rows``).
    ``ValueError`` (``targets.NAME: ...``) when ``given`` names a target a run lacks."""
    if figures is None:
        figures = lambda run: RowFigures(runs.rows[runs.rows["run"] == run])  # noqa: E731
    results = {}
    for run, manifest in runs.manifests.items():
        mine = figures(run)
        if given is None:
            objectives = run_objectives(manifest)
        else:
            targets = list(dict.fromkeys([*manifest.targets, *mine.targets()]))
            unknown = sorted(set(given[1]) - set(targets))
            if unknown:
                raise ValueError(f"targets.{unknown[0]}: {run} has no such target")
            objectives = effective(targets, *given)
        if objectives:
            results[run] = check_figures(mine, objectives, manifest.load_starts())
    return results


def check(
    rows: pd.DataFrame,
    objectives: Mapping[str, Objectives],
    starts: Mapping[str, int] | None = None,
) -> list[Verdict]:
    """Every target's objectives over one run's rows (``check_figures``)."""
    return check_figures(RowFigures(rows), objectives, starts)


def check_figures(
    figures: TargetFigures,
    objectives: Mapping[str, Objectives],
    starts: Mapping[str, int] | None = None,
) -> list[Verdict]:
    """Every target's objectives over one run's figures (a target without rows has every
    objective unmet: nothing showed them). Windows begin at each target's load start
    in ``starts`` (``RunRecord.load_starts``), else at its first intended time."""
    verdicts = []
    for target, mine in objectives.items():
        summary = figures.summary(target)
        if summary is None:
            empty: dict[str, Any] = {"requests": 0, "errors": {}}
            empty |= dict.fromkeys(_SUMMARY_KEY.values())
            verdicts += evaluate(target, mine, empty)
            continue
        start = (starts or {}).get(target)
        windows = None if mine.window_ns is None else figures.windows(target, mine, start)
        verdicts += evaluate(target, mine, summary, windows)
    return verdicts


def junit_xml(results: Mapping[str, list[Verdict]]) -> str:
    """JUnit XML for CI systems: a test suite per run, a test case per target and
    objective, a failure for each objective not met."""
    suites = ET.Element("testsuites", name="blastradius")
    for run, verdicts in results.items():
        failures = sum(not v.met for v in verdicts)
        suite = ET.SubElement(
            suites, "testsuite", name=run, tests=str(len(verdicts)), failures=str(failures)
        )
        for v in verdicts:
            case = ET.SubElement(suite, "testcase", classname=f"{run}.{v.target}", name=describe(v))
            if not v.met:
                measured = format_value(v.objective, v.measured)
                where = f" in windows starting at {', '.join(f'{t:g}s' for t in v.breaches)}"
                message = f"measured {measured}{where if v.breaches else ''}"
                ET.SubElement(case, "failure", message=message)
    suites.set("tests", str(sum(len(v) for v in results.values())))
    suites.set("failures", str(sum(not x.met for v in results.values() for x in v)))
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
