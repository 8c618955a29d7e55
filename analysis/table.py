"""Summaries as text: the table ``analyze`` and ``run`` print, and the run's warnings;
``text_table``, the one way a table is laid out in text."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from blastradius.analysis.load import Runs
from blastradius.workers.run_record import GeneratorState, Missing, RunStatus


def error_counts(errors: dict[str, int], prose: bool = False) -> str:
    """Errors by kind as text, in kind order: ``timeout=30 reset=2`` for tables and
    progress lines, ``reset 2, timeout 1,030`` (``prose``) for Markdown and HTML; ``-``
    for none."""
    if prose:
        return ", ".join(f"{k} {v:,}" for k, v in sorted(errors.items())) or "-"
    return " ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "-"


@dataclass(frozen=True)
class Column:
    """A column of a text table: its header, its width (0: as wide as its text, for a
    last column), names aligned left and figures right, and the spaces before it."""

    header: str
    width: int = 0
    left: bool = False
    gap: int = 0


def text_table(columns: Sequence[Column], rows: Iterable[Sequence[str]]) -> list[str]:
    """The header line, then a line per row of cells (already text), each cell padded
    to its column."""

    def line(cells: Sequence[str]) -> str:
        return "".join(
            " " * c.gap + f"{cell:{'<' if c.left else '>'}{c.width}}"
            for c, cell in zip(columns, cells, strict=True)
        )

    return [line([c.header for c in columns]), *(line(row) for row in rows)]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_table(summaries: dict[str, dict], label: str = "target") -> list[str]:
    """One line per target (or what ``label`` names): availability, goodput, latency
    percentiles, errors."""
    columns = [
        Column(label, 12, left=True),
        *(Column(h, w) for h, w in (("requests", 10), ("ok", 10), ("avail", 9))),
        Column("goodput/s", 11),
        *(Column(h, 10) for h in ("p50 ms", "p99 ms", "p99.9 ms", "max ms")),
        Column("errors", left=True, gap=2),
    ]
    rows = [
        [
            str(name),
            str(s["requests"]),
            str(s["ok"]),
            "-" if s["availability"] is None else f"{s['availability']:.4f}",
            "-" if s["goodput_rps"] is None else f"{s['goodput_rps']:.1f}",
            *(_ms(s[key]) for key in ("p50_ms", "p99_ms", "p999_ms", "max_ms")),
            error_counts(s["errors"]),
        ]
        for name, s in summaries.items()
    ]
    return text_table(columns, rows)


def session_lines(target: str, figures: dict, steps: list[str]) -> list[str]:
    """A session target's sessions in words, then its funnel (``steps``: the steps'
    labels, ``INDEX NAME``; none for a python flow)."""
    duration = figures["duration"]
    lines = [
        f"{target}, sessions: {figures['sessions']} started, {figures['completed']} "
        f"completed ({figures['session_availability']:.4f}), {figures['cut']} cut short; "
        f"journey p50 {_ms(duration['p50_ms']).strip()} ms, "
        f"p99 {_ms(duration['p99_ms']).strip()} ms"
    ]
    for label, stage in zip(steps, figures["funnel"], strict=False):
        lines.append(f"  {label}: reached by {stage['reached']}, ended {stage['ended']}")
    return lines


def warnings(runs: Runs, summaries: dict[str, dict]) -> list[str]:
    """Saturated generators, a session target's failed checks (the most frequent), lost
    generators and their missing windows, runs that did not complete (and why; a run
    still ``running`` is one whose driver died), skipped files."""
    lines = [
        f"warning: {name}: a generator's send lag p99 passed 10 ms; these numbers "
        "describe the generator as much as the target"
        for name, s in summaries.items()
        if s["saturated"]
    ]
    for manifest in runs.manifests.values():
        for name, block in manifest.targets.items():
            checks: dict[str, int] = {}
            for g in block.generators:
                for check, n in (g.checks or {}).items():
                    checks[check] = checks.get(check, 0) + n
            if checks:
                worst = sorted(checks.items(), key=lambda item: (-item[1], item[0]))
                listed = "; ".join(f"{check} ({n})" for check, n in worst[:5])
                more = f"; {len(worst) - 5} more in run.json" if len(worst) > 5 else ""
                lines.append(f"warning: {name}: failed checks: {listed}{more}")
            for g in block.generators:
                if g.gone:
                    missing = g.missing or Missing(None, None)
                    how = g.fate if g.state == GeneratorState.LOST else f"{g.fate} ({g.error})"
                    lines.append(
                        f"warning: {name}: generator {g.worker} {how} at {g.lost_at}; its "
                        f"share from {missing.start} to {missing.end} is missing"
                    )
        status, run = manifest.status, manifest.run_id
        if status == RunStatus.RUNNING:
            lines.append(
                f"warning: run {run} is incomplete: its driver never finished it (run.json "
                "still says running); these are the rows it wrote before it stopped"
            )
        elif status != RunStatus.COMPLETED:
            error = f": {manifest.error}" if manifest.error else ""
            lines.append(f"warning: run {run} is {status}{error}")
    lines += [f"warning: skipped {entry}" for entry in runs.skipped]
    return lines
