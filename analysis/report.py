"""The HTML report: one self-contained page for a run, or for several runs compared.

``write_report(paths, out_dir)`` reads the runs' files (``analysis.scan``: a few
columns a batch at a time, never a run whole), draws the plots, writes them as PNGs
to ``<out_dir>/plots/`` and writes ``<out_dir>/report.html`` with the same images
embedded (data URIs), so the page can be mailed or archived alone.
The page has the summary table (ratios to the first series when there are
several), warnings (saturated or lost generators and their missing windows,
skipped files), the plots, and each run's scenario, status, generator
placement and versions.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from blastradius.analysis import plots, scan, slo
from blastradius.analysis.compare import compare
from blastradius.analysis.load import Runs, Shard
from blastradius.analysis.phases import PHASES, http_versions, phase_figures
from blastradius.analysis.series import series_names, shard_series
from blastradius.analysis.sessions import session_figures
from blastradius.analysis.table import error_counts, warnings
from blastradius.workers.layout import publish_bytes
from blastradius.workers.run_record import RouteCounts, RunRecord

S = 1_000_000_000
MAX_WINDOWS = 600  # timeline points per series before the window widens


@dataclass(frozen=True)
class Report:
    """Where a report went: the page and its PNGs."""

    html: Path
    plots: tuple[Path, ...]


def _origins(runs: Runs, spans: dict[str, tuple[int, int]]) -> dict[str, int]:
    """Each series' load start (ns): the manifest's, else its first intended time."""
    origins = {}
    for (run, target), name in series_names(runs).items():
        start_ns = runs.manifests[run].target(target).start_ns
        if start_ns is not None:
            origins[name] = start_ns
    for name, (first, _) in spans.items():
        origins.setdefault(name, first)
    return origins


PATTERN_COLOR = "darkcyan"


def series_fault_marks(runs: Runs) -> dict[str, list[tuple]]:
    """Per series, the dependency's fault times (s from the load start) and what changed."""
    return {
        name: [(f.at_s, f.label) for f in runs.manifests[run].target(target).faults]
        for (run, target), name in series_names(runs).items()
    }


def series_pattern_marks(runs: Runs) -> dict[str, list[tuple]]:
    """Per series, what the service's patterns did (a state change, or the start of an
    episode of refusals), in their own color; not each move of an adaptive limit (too
    many to mark)."""
    marks: dict[str, list[tuple]] = {}
    for (run, target), name in series_names(runs).items():
        patterns = runs.manifests[run].target(target).patterns
        events = () if patterns is None else patterns.events
        marks[name] = [
            (e.at_s, e.label, PATTERN_COLOR)
            for e in events
            if (e.pattern, e.event) != ("limit", "changed")
        ]
    return marks


def window_ns(spans: dict[str, tuple[int, int]]) -> int:
    """1 s, or a whole number of seconds wide enough for at most MAX_WINDOWS per series
    (``spans``: each series' first and last intended time)."""
    if not spans:
        return S
    longest_s = max(last - first for first, last in spans.values()) / S
    return S * max(1, int(np.ceil(longest_s / MAX_WINDOWS)))


def series_timeline(
    runs: Runs, shards: Sequence[Shard], origins: dict[str, int], width_ns: int
) -> pd.DataFrame:
    """The timeline of each series from its own origin, with a ``series`` column."""
    name = shard_series(runs)
    parts = []
    for label in dict.fromkeys(name(shard) for shard in shards):
        mine = [shard for shard in shards if name(shard) == label]
        part = scan.timeline(mine, name, width_ns, origins.get(label))
        parts.append(part.rename(columns={"target": "series"}))
    if not parts:
        return scan.timeline([], name).rename(columns={"target": "series"})
    return pd.concat(parts, ignore_index=True)


def series_verdicts(runs: Runs, shards: Sequence[Shard]) -> dict[str, list[slo.Verdict]]:
    """Per series, the verdicts on its run's own objectives (``slo:``), if it had any."""
    names = series_names(runs)
    result: dict[str, list[slo.Verdict]] = {}
    figures = lambda run: scan.FileFigures([s for s in shards if s.run == run])  # noqa: E731
    for run, verdicts in slo.judge(runs, figures=figures).items():
        for verdict in verdicts:
            name = names.get((run, verdict.target), verdict.target)
            result.setdefault(name, []).append(verdict)
    return result


def breach_spans(
    verdicts: dict[str, list[slo.Verdict]], latency: bool
) -> dict[str, list[tuple[float, float]]]:
    """Per series, the windows (start, end; s from the load start) that breached an
    availability objective (or, with ``latency``, a latency one)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for name, mine in verdicts.items():
        for v in mine:
            if not v.breaches or v.window_s is None:
                continue
            if v.objective.startswith("availability") == latency:
                continue
            spans.setdefault(name, []).extend((t, t + v.window_s) for t in v.breaches)
    return spans


def figures(
    runs: Runs,
    shards: Sequence[Shard],
    verdicts: dict[str, list[slo.Verdict]] | None = None,
) -> dict[str, tuple[str, Figure]]:
    """Every plot of the report, from the runs' shards: file stem -> (caption, figure).

    ``verdicts`` are ``series_verdicts(runs, shards)`` when the caller has them already.
    """
    verdicts = series_verdicts(runs, shards) if verdicts is None else verdicts
    name = shard_series(runs)
    spans = scan.spans(shards, name)
    width = window_ns(spans)
    line = series_timeline(runs, shards, _origins(runs, spans), width)
    faults = series_fault_marks(runs)
    patterns = series_pattern_marks(runs)
    both = {series: [*marks, *patterns.get(series, ())] for series, marks in faults.items()}
    did = (
        " Dotted in cyan: what the service's patterns did (a breaker's state, refusals)."
        if any(patterns.values())
        else ""
    )
    missed = (
        " Shaded: windows that missed an objective."
        if any(v.breaches for mine in verdicts.values() for v in mine)
        else ""
    )
    curves = scan.curves(shards, name)
    edges = plots.histogram_edges(curves)
    counts = {} if edges is None else scan.latency_counts(shards, name, edges)
    seconds = f"{width // S} s"
    return {
        "availability_timeline": (
            f"Availability per {seconds} window of intended send time.{missed}",
            plots.availability_timeline(line, faults, breach_spans(verdicts, latency=False)),
        ),
        "endpoint_availability": (
            "Availability per endpoint: where the failures are.",
            plots.endpoint_availability(scan.endpoint_availability(shards, name)),
        ),
        "goodput_timeline": (
            f"Successful requests per second ({seconds} windows) against the schedule.",
            plots.goodput_timeline(line, faults),
        ),
        "latency_timeline": (
            f"p50, p90 and p99 latency of successful requests per {seconds} window.{missed}{did}",
            plots.latency_timeline(line, both, breach_spans(verdicts, latency=True)),
        ),
        "percentiles": (
            "Latency by percentile (nearest rank), from the intended send and from the send.",
            plots.percentile_curve(curves),
        ),
        "latency_histogram": (
            "Latency of successful requests, measured from the intended send time.",
            plots.latency_histogram(edges, counts),
        ),
    }


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def write_report(paths: Sequence[str], out_dir: str | Path) -> Report:
    """Read ``paths`` (run directories or directories of runs) from their files and write
    the report."""
    runs, shards = scan.open_runs(paths)
    verdicts = series_verdicts(runs, shards)
    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    images, written = [], []
    for stem, (caption, figure) in figures(runs, shards, verdicts).items():
        data = _png(figure)
        path = out / "plots" / f"{stem}.png"
        path.write_bytes(data)
        written.append(path)
        images.append((caption, stem, data))
    order = list(series_names(runs).values())
    summaries = scan.summaries(shards, shard_series(runs), order)
    page = out / "report.html"
    sessions = sessions_html(runs, shards)
    phases = phases_html(runs, shards)
    page_html = render(runs, summaries, images, verdicts, sessions, phases)
    publish_bytes(str(page), page_html.encode())
    return Report(page, tuple(written))


def phases_html(runs: Runs, shards: Sequence[Shard]) -> str:
    """Where each series' time went (``analysis.phases``), a row each; empty when no
    series' rows have phases (runs written before schema v4)."""
    found = phase_figures(shards, shard_series(runs))
    rows = []
    for name in series_names(runs).values():
        figures = found.get(name)
        if figures is None:
            continue
        cells = [
            html.escape(name),
            html.escape(http_versions(figures)),
            f"{figures['connections']:,}",
            f"{figures['requests_per_connection']:,.1f}",
            f"{figures['opened']:,}",
        ]
        for phase in PHASES:
            spread = figures[phase]
            cells += [_cell(spread["p50_ms"], "{:,.2f}"), _cell(spread["p99_ms"], "{:,.2f}")]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    if not rows:
        return ""
    head = ["series", "HTTP", "connections", "requests each", "opened"]
    for phase in ("opening", "TLS", "first byte", "receiving"):
        head += [f"{phase} p50 ms", f"{phase} p99 ms"]
    header = "".join(f"<th>{h}</th>" for h in head)
    return f'<div class="scroll"><table><tr>{header}</tr>{"".join(rows)}</table></div>'


def sessions_html(runs: Runs, shards: Sequence[Shard]) -> str:
    """Each session target's sessions (``analysis.sessions``): started, completed, cut
    short, the completed journeys' percentiles, and per step (YAML steps only) the
    sessions that reached it and ended there beside its requests' summary."""
    parts = []
    for (run, target), name in series_names(runs).items():
        block = runs.manifests[run].target(target)
        if not (block.steps or block.flow):
            continue
        mine = [shard for shard in shards if shard.run == run and shard.target == target]
        figures = session_figures(mine, len(block.steps or ()))
        if figures is None:
            continue
        duration = figures["duration"]
        parts.append(
            f"<h3>{html.escape(name)}</h3><p>{figures['sessions']:,} sessions started, "
            f"{figures['completed']:,} completed "
            f"({_cell(figures['session_availability'], '{:.4f}')}), {figures['cut']:,} cut "
            f"short. Completed journeys, from the arrival: p50 "
            f"{_cell(duration['p50_ms'], '{:,.1f}')} ms, p99 "
            f"{_cell(duration['p99_ms'], '{:,.1f}')} ms, max "
            f"{_cell(duration['max_ms'], '{:,.1f}')} ms.</p>"
        )
        if not block.steps:
            continue
        steps = scan.step_summaries(mine, len(block.steps))
        rows = []
        for step, stage, summary in zip(block.steps, figures["funnel"], steps, strict=True):
            s = summary or {"requests": 0, "availability": None, "p50_ms": None}
            s = {"p99_ms": None, "errors": {}, **s}
            grade = _grade(s["availability"])
            rows.append(
                f"<tr><td>{stage['step']} {html.escape(step)}</td><td>{stage['reached']:,}</td>"
                f"<td>{stage['ended']:,}</td><td>{s['requests']:,}</td>"
                f'<td class="{grade}">{_cell(s["availability"], "{:.4f}")}</td>'
                f"<td>{_cell(s['p50_ms'], '{:,.1f}')}</td><td>{_cell(s['p99_ms'], '{:,.1f}')}</td>"
                f"<td>{html.escape(error_counts(s['errors']))}</td></tr>"
            )
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "step",
                "sessions reached",
                "ended there",
                "requests",
                "availability",
                "p50 ms",
                "p99 ms",
                "errors",
            )
        )
        parts.append(f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>')
    return "".join(parts)


# ---- HTML ------------------------------------------------------------------------------

_STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d232b;
       max-width: 1100px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { margin-top: 1.8em; border-bottom: 1px solid
#dde2e8; padding-bottom: 0.2em; } .sub { color: #5b6673; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; font-variant-numeric: tabular-nums;
        font-size: 0.86em; } .scroll { overflow-x: auto; }
th, td { padding: 0.3em 0.55em; border-bottom: 1px solid #e6e9ee; text-align: right; }
th { background: #f4f6f9; font-weight: 600; } td:first-child, th:first-child { text-align: left; }
td.good { color: #17803d; font-weight: 600; } td.fair { color: #a86400; font-weight: 600; }
td.bad { color: #c0262d; font-weight: 600; }
.warn { background: #fff6e5; border-left: 4px solid #e0a100; padding: 0.5em 0.9em;
        margin: 0.4em 0; } .ok { color: #5b6673; }
figure { margin: 1.4em 0; } figure img { max-width: 100%; border: 1px solid #e6e9ee; }
figcaption { color: #5b6673; font-size: 0.92em; }
pre { background: #f4f6f9; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
details { margin: 0.6em 0; } summary { cursor: pointer; font-weight: 600; }
"""

_COLUMNS = (
    ("requests", "requests", "{:,.0f}"),
    ("availability", "availability", "{:.4f}"),
    ("goodput_rps", "goodput/s", "{:,.1f}"),
    ("p50_ms", "p50 ms", "{:,.1f}"),
    ("p99_ms", "p99 ms", "{:,.1f}"),
    ("p999_ms", "p99.9 ms", "{:,.1f}"),
    ("max_ms", "max ms", "{:,.1f}"),
    ("service_p99_ms", "service p99 ms", "{:,.1f}"),
    ("send_lag_p99_ms", "send lag p99 ms", "{:,.2f}"),
)


def _cell(value: object, pattern: str) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return pattern.format(value)


def _grade(availability: float | None) -> str:
    if availability is None:
        return ""
    return "good" if availability >= 0.99 else "fair" if availability >= 0.9 else "bad"


def summary_html(summaries: dict[str, dict]) -> str:
    """The summary table, with ratios to the first series when there are several."""
    ratios = compare(summaries).set_index("name") if len(summaries) > 1 else None
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in _COLUMNS)
    extra = (
        "<th>avail &minus; first</th><th>goodput &times;</th><th>p99 &times;</th>"
        if ratios is not None
        else ""
    )
    lines = [f"<table><tr><th>series</th>{head}<th>errors</th>{extra}</tr>"]
    for name, s in summaries.items():
        cells = []
        for key, _, pattern in _COLUMNS:
            grade = _grade(s[key]) if key == "availability" else ""
            cells.append(f'<td class="{grade}">{_cell(s[key], pattern)}</td>')
        errors = error_counts(s["errors"], prose=True)
        cells.append(f"<td>{html.escape(errors)}</td>")
        if ratios is not None:
            r = ratios.loc[str(name)]
            cells += [
                f"<td>{_cell(r['availability_delta'], '{:+.4f}')}</td>",
                f"<td>{_cell(r['goodput_x'], '{:.2f}')}</td>",
                f"<td>{_cell(r['p99_x'], '{:.2f}')}</td>",
            ]
        lines.append(f"<tr><td>{html.escape(str(name))}</td>{''.join(cells)}</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def objectives_html(verdicts: dict[str, list[slo.Verdict]]) -> str:
    """The objectives of each series: met or not, the figure, the margin, the windows."""
    lines = [
        "<table><tr><th>series</th><th>objective</th><th>measured</th><th>margin</th>"
        "<th>result</th></tr>"
    ]
    for name, mine in verdicts.items():
        for v in mine:
            result = "met" if v.met else "not met"
            if v.breaches:
                starts = ", ".join(f"{t:g}" for t in v.breaches[:10])
                more = f" and {len(v.breaches) - 10} more" if len(v.breaches) > 10 else ""
                result += f" (windows from {starts}{more} s)"
            margin = v.margin
            margin_text = "-" if margin is None else slo.format_value(v.objective, abs(margin))
            sign = "&minus;" if margin is not None and margin < 0 else ""
            lines.append(
                f"<tr><td>{html.escape(name)}</td><td>{html.escape(slo.describe(v))}</td>"
                f"<td>{html.escape(slo.format_value(v.objective, v.measured))}</td>"
                f"<td>{sign}{html.escape(margin_text)}</td>"
                f'<td class="{"good" if v.met else "bad"}">{html.escape(result)}</td></tr>'
            )
    lines.append("</table>")
    return "\n".join(lines)


def proxies_html(runs: Runs, summaries: dict[str, dict]) -> str:
    """What each run's proxies injected, per target and route, beside the availability
    that target kept ("" when no run had a proxy)."""
    names = series_names(runs)
    rows = []
    for (run, target), name in names.items():
        block = runs.manifests[run].target(target)
        availability = summaries.get(name, {}).get("availability")
        for proxy, counts in block.proxies.items():
            for route in counts.routes:
                cells = "".join(f"<td>{n:,}</td>" for n in route.counts())
                rows.append(
                    f"<tr><td>{html.escape(name)}</td><td>{html.escape(proxy)}</td>"
                    f"<td><code>{html.escape(route.route)}</code></td>{cells}"
                    f'<td class="{_grade(availability)}">{_cell(availability, "{:.4f}")}</td></tr>'
                )
    if not rows:
        return ""
    columns = ["series", "proxy", "route", *RouteCounts.COUNTS, "availability kept"]
    head = "".join(f"<th>{h}</th>" for h in columns)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _placement_html(manifest: RunRecord) -> str:
    lines = []
    for target, block in manifest.targets.items():
        rows = "".join(
            f"<tr><td>{g.worker}</td><td><code>{html.escape(g.node[:16])}"
            f"</code></td><td>{html.escape(g.state)}</td>"
            f"<td>{_cell(g.rows, '{:,}')}</td>"
            f"<td>{_cell(g.send_lag_p99_ms, '{:.2f}')}</td></tr>"
            for g in block.generators
        )
        lines.append(
            f"<p><b>{html.escape(target)}</b>: {html.escape(block.placement or '-')}"
            f" placement, load from {html.escape(block.start or '-')}</p>"
            "<table><tr><th>generator</th><th>node</th><th>state</th><th>rows</th>"
            f"<th>send lag p99 ms</th></tr>{rows}</table>"
        )
    return "\n".join(lines)


def _run_html(run: str, manifest: RunRecord) -> str:
    scenario = yaml.safe_dump(dict(manifest.scenario), sort_keys=False)
    facts = {
        "status": manifest.status,
        "started": manifest.started,
        "ended": manifest.ended,
        "nodes": manifest.ray.nodes,
        "generators": manifest.ray.generators,
    }
    fact_rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    versions = json.dumps(manifest.versions.to_json())
    return (
        f"<h2>Run {html.escape(run)}</h2><table>{fact_rows}</table>"
        f"<h3>Generator placement</h3>{_placement_html(manifest)}"
        f"<details><summary>Scenario</summary><pre>{html.escape(scenario)}</pre></details>"
        f"<details><summary>Versions</summary><pre>{html.escape(versions)}</pre></details>"
    )


def render(
    runs: Runs,
    summaries: dict[str, dict],
    images: Sequence[tuple[str, str, bytes]],
    verdicts: dict[str, list[slo.Verdict]],
    sessions: str = "",
    phases: str = "",
) -> str:
    """The whole page: summary, objectives, sessions, where the time went, warnings,
    plots (embedded PNGs), then each run's details.

    ``summaries`` are per series, ``verdicts`` ``series_verdicts``, ``sessions``
    ``sessions_html``, ``phases`` ``phases_html``. Over 60 lines because
    it is the page's markup in reading order; its parts are functions.
    """
    objectives = ""
    if verdicts:
        count = sum(len(v) for v in verdicts.values())
        missed = sum(not x.met for v in verdicts.values() for x in v)
        headline = f"All {count} met." if not missed else f"{missed} of {count} not met."
        objectives = (
            f"<h2>Objectives</h2><p>{headline}</p>"
            f'<div class="scroll">{objectives_html(verdicts)}</div>'
        )
    notes = warnings(runs, summaries)
    injected = proxies_html(runs, summaries)
    if injected:
        injected = (
            "<h2>Injected by proxies</h2><p>What each proxy did to the requests your "
            f'service sent through it, during each target\'s load.</p><div class="scroll">'
            f"{injected}</div>"
        )
    if not summaries:
        notes.append("warning: no request rows were found")
    title = (
        f"blastradius: {next(iter(runs.manifests))}"
        if len(runs.manifests) == 1
        else f"blastradius: {len(runs.manifests)} runs compared"
    )
    warning_html = (
        "".join(
            f'<div class="warn">{html.escape(n.removeprefix("warning: "))}</div>' for n in notes
        )
        or '<p class="ok">No warnings: every generator kept its schedule and finished.</p>'
    )
    figure_html = "".join(
        f'<figure><img alt="{html.escape(stem)}" src="data:image/png;base64,'
        f'{base64.b64encode(data).decode()}"><figcaption>{html.escape(caption)}</figcaption>'
        "</figure>"
        for caption, stem, data in images
    )
    sessions_part = (
        "<h2>Sessions</h2><p>A session reaches a step when a row of its there was ok, and "
        f"ends at the step whose failure ended it.</p>{sessions}"
        if sessions
        else ""
    )
    phases_part = (
        "<h2>Where the time went</h2><p>Per series: the connections its requests used, "
        "and percentiles of opening one (over the requests that waited for one), of its "
        "TLS handshake, of the first response byte after the request was written, and of "
        "receiving the rest (over the ok requests).</p>" + phases
        if phases
        else ""
    )
    generated = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="sub">Generated {generated}. Availability is ok requests over those '
        "scheduled; percentiles are nearest-rank over successful requests, measured from "
        "the intended send time.</p>"
        f'<h2>Summary</h2><div class="scroll">{summary_html(summaries)}</div>'
        f"{objectives}"
        f"{sessions_part}"
        f"{phases_part}"
        f"{injected}"
        f"<h2>Warnings</h2>{warning_html}"
        f"<h2>Plots</h2>{figure_html}"
        + "".join(_run_html(run, m) for run, m in runs.manifests.items())
        + "</body></html>\n"
    )
