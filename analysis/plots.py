"""Plots of request rows, drawn with matplotlib's ``Figure`` (no pyplot, no display).

Each function takes rows (or a timeline) with a ``series`` column naming what
is compared (a target, or ``run/target``) and returns a ``Figure``; curves of
several series are overlaid, and the latency timeline has one panel per
series. Fault times (seconds from each series' start) are marked as vertical
lines on the timelines. Nothing here reads files or knows about Ray.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

MS = 1e6
NINES = (0.0, 0.9, 0.99, 0.999, 0.9999, 0.99999)
_WIDE = (9.0, 4.2)
# Per series: a column ("latency_ns", "service_ns") -> (fractions, values in ms).
Curves = Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]]

# series -> [(at_s, label)] or [(at_s, label, color)]: a fault (crimson), or what a
# pattern of the service did (its own color)
Faults = Mapping[str, Sequence[tuple[float, str] | tuple[float, str, str]]]
Spans = Mapping[str, Sequence[tuple[float, float]]]  # series -> [(start_s, end_s)]


def _figure(size: tuple[float, float] = _WIDE, rows: int = 1) -> tuple[Figure, list]:
    figure = Figure(figsize=size, layout="constrained", dpi=100)
    axes = figure.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    return figure, list(axes)


def _series(frame: pd.DataFrame) -> list[str]:
    """The series present, in category order when ``series`` is categorical."""
    column = frame["series"]
    present = [str(s) for s in column.unique()]
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories if str(c) in present]
    return present


def _of(frame: pd.DataFrame, series: str) -> pd.DataFrame:
    """The rows (or timeline) of one series."""
    return frame[frame["series"] == series]


def _plain(value: float, _position: object = None) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.3g}"


def _log_y(axes) -> None:
    """A log latency axis with plain numbers; minor labels only within one decade."""
    axes.set_yscale("log")
    axes.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.yaxis.set_major_formatter(FuncFormatter(_plain))
    low, high = axes.get_ylim()
    axes.yaxis.set_minor_formatter(
        FuncFormatter(_plain) if high / max(low, 1e-12) < 10 else NullFormatter()
    )


def _legend(axes, **options: object) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(**options)


def _empty_note(axes, text: str = "no successful requests") -> None:
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center", color="0.4")


def histogram_edges(curves: Curves) -> np.ndarray | None:
    """The latency histogram's bins (ms): 60 log-spaced from the smallest ok latency of
    any series to the largest (the ends of their percentile curves); None for none."""
    ends = [(y[0], y[-1]) for mine in curves.values() for y in [mine["latency_ns"][1]]]
    if not ends:
        return None
    low = max(min(e[0] for e in ends), 1e-3)
    high = max(max(e[1] for e in ends), 1e-3) * 1.001
    return np.geomspace(low, high if high > low else low * 10, 60)


def latency_histogram(edges: np.ndarray | None, counts: Mapping[str, np.ndarray]) -> Figure:
    """Histogram of ok requests' latency (from the intended time), log-spaced bins
    (``histogram_edges``), one outline per series (``counts``: its requests per bin)."""
    figure, (axes,) = _figure()
    drawn = {name: c for name, c in counts.items() if c.sum()}
    if edges is None or not drawn:
        _empty_note(axes)
        return figure
    for series, c in drawn.items():
        axes.stairs(c, edges, linewidth=1.6, label=series)
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(_plain))
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("latency from the intended send time (ms, log scale)")
    axes.set_ylabel("requests")
    axes.set_title("Latency of successful requests")
    _legend(axes, loc="upper right")
    return figure


def _nines_x(q: np.ndarray) -> np.ndarray:
    return -np.log10(1.0 - q)


def percentile_curve(curves: Curves) -> Figure:
    """Nearest-rank latency percentiles on a "nines" axis (50%, 90%, 99%, ...), overlaid
    (``curves``: per series, ``analysis.scan.curves``).

    Solid: from the intended send time (what users waited); dashed: from the
    actual send (what a closed-loop tool would report).
    """
    figure, (axes,) = _figure()
    drawn = 0
    top = 0.0
    for index, (series, mine) in enumerate(curves.items()):
        for column, style, suffix in (("latency_ns", "-", ""), ("service_ns", "--", " (service)")):
            q, y = mine[column]
            axes.plot(_nines_x(q), y, style, color=f"C{index}", label=series + suffix)
            drawn += 1
            top = max(top, float(_nines_x(q).max()))
    if not drawn:
        _empty_note(axes)
        return figure
    ticks = [q for q in NINES if _nines_x(np.array(q)) <= top + 1e-9]
    axes.xaxis.set_major_locator(FixedLocator(_nines_x(np.array(ticks)).tolist()))
    axes.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"{100 * (1 - 10**-x):.{max(0, round(x) - 2)}f}%")
    )
    _log_y(axes)
    axes.set_xlabel("percentile (nearest rank)")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_title("Latency by percentile: from the intended send (solid), from the send (dashed)")
    _legend(axes, loc="upper left", fontsize="small")
    return figure


def _mark_faults(axes, faults: Faults, series: Sequence[str]) -> None:
    seen: set[tuple] = set()
    for name in series:
        for mark in faults.get(name, ()):
            if mark in seen:
                continue
            seen.add(mark)
            at_s, label, color = (*mark, "crimson")[:3]
            axes.axvline(at_s, color=color, linestyle=":", linewidth=1.4)
            axes.annotate(
                label,
                (at_s, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12 - 10 * (len(seen) - 1) % 60),  # stacked, so none hides another
                textcoords="offset points",
                color=color,
                fontsize="small",
            )


def _shade(axes, spans: Spans, series: Sequence[str]) -> None:
    for name in series:
        for start, end in spans.get(name, ()):
            axes.axvspan(start, end, color="crimson", alpha=0.12, linewidth=0)


def latency_timeline(
    line: pd.DataFrame, faults: Faults | None = None, missed: Spans | None = None
) -> Figure:
    """p50/p90/p99 of ok requests per window, one panel per series; ``missed`` windows
    (a latency objective not met there) shaded."""
    names = _series(line) or ["(no rows)"]
    figure, panels = _figure((_WIDE[0], 2.4 * len(names) + 0.6), rows=len(names))
    for axes, name in zip(panels, names, strict=True):
        mine = _of(line, name)
        if mine[["p50_ms", "p90_ms", "p99_ms"]].notna().to_numpy().any():
            for column, width in (("p50_ms", 1.0), ("p90_ms", 1.3), ("p99_ms", 1.8)):
                axes.plot(mine["t_s"], mine[column], linewidth=width, marker=".", label=column[:3])
            _log_y(axes)
            _legend(axes, loc="upper left", fontsize="small", ncols=3)
        else:
            _empty_note(axes)
        _mark_faults(axes, faults or {}, [name])
        _shade(axes, missed or {}, [name])
        axes.set_ylabel("ms (log)")
        axes.set_title(f"{name}: latency of successful requests per window", fontsize="medium")
    panels[-1].set_xlabel("seconds from the start of the load")
    return figure


def goodput_timeline(line: pd.DataFrame, faults: Faults | None = None) -> Figure:
    """Successful requests per second (solid) against those scheduled (thin), overlaid."""
    figure, (axes,) = _figure()
    width_s = _window_s(line)
    for index, name in enumerate(_series(line)):
        mine = _of(line, name)
        color = f"C{index}"
        axes.plot(
            mine["t_s"], mine["goodput_rps"], color=color, linewidth=1.8, label=f"{name} ok/s"
        )
        axes.plot(
            mine["t_s"],
            mine["scheduled"] / width_s,
            color=color,
            linewidth=0.8,
            alpha=0.6,
            label=f"{name} scheduled/s",
        )
    _mark_faults(axes, faults or {}, _series(line))
    axes.set_ylim(bottom=0)
    axes.set_xlabel("seconds from the start of the load")
    axes.set_ylabel("requests per second")
    axes.set_title("Goodput: successful requests per second, against the schedule")
    _legend(axes, loc="best", fontsize="small", ncols=2)
    return figure


def _window_s(line: pd.DataFrame) -> float:
    times = np.unique(line["t_s"].to_numpy())
    return float(np.min(np.diff(times))) if len(times) > 1 else 1.0


def availability_timeline(
    line: pd.DataFrame, faults: Faults | None = None, missed: Spans | None = None
) -> Figure:
    """Availability (ok / scheduled) per window of intended time, overlaid; ``missed``
    windows (an availability objective not met there) shaded."""
    figure, (axes,) = _figure()
    for name in _series(line):
        mine = _of(line, name)
        axes.plot(mine["t_s"], mine["availability"], linewidth=1.8, label=name)
    _mark_faults(axes, faults or {}, _series(line))
    _shade(axes, missed or {}, _series(line))
    axes.set_ylim(-0.02, 1.05)
    axes.set_xlabel("seconds from the start of the load")
    axes.set_ylabel("availability")
    axes.set_title("Availability per window: successful / scheduled")
    _legend(axes, loc="best", fontsize="small")
    return figure


def endpoint_availability(summaries: Mapping[tuple[str, int], dict]) -> Figure:
    """Availability per endpoint, one group of bars per series: the blast radius at a glance.

    ``summaries`` is keyed by ``(series, endpoint)`` as ``summary(rows, by=[...])`` gives.
    """
    figure, (axes,) = _figure()
    names = list(dict.fromkeys(str(k[0]) for k in summaries))
    endpoints = sorted({int(k[1]) for k in summaries})
    width = 0.8 / max(len(names), 1)
    for index, name in enumerate(names):
        heights = [(summaries.get((name, e)) or {}).get("availability") or 0.0 for e in endpoints]
        x = np.arange(len(endpoints)) + (index - (len(names) - 1) / 2) * width
        axes.bar(x, heights, width=width, label=name)
    axes.set_xticks(np.arange(len(endpoints)), [str(e) for e in endpoints])
    columns = len(names) if sum(len(n) for n in names) < 60 else 2
    axes.set_ylim(0, 1.22 if columns >= len(names) else 1.1 + 0.08 * -(-len(names) // 2))
    axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    axes.set_xlabel("endpoint")
    axes.set_ylabel("availability")
    axes.set_title("Availability per endpoint")
    _legend(axes, loc="upper center", fontsize="small", ncols=max(columns, 1))
    return figure
