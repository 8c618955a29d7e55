"""Summaries as text: the table ``analyze`` and ``run`` print, and the run's warnings."""

from __future__ import annotations

from blastradius.analysis.load import Runs
from blastradius.workers.run_record import GeneratorState, Missing, RunStatus


def error_counts(errors: dict[str, int], prose: bool = False) -> str:
    """Errors by kind as text, in kind order: ``timeout=30 reset=2`` for tables and
    progress lines, ``reset 2, timeout 1,030`` (``prose``) for Markdown and HTML; ``-``
    for none."""
    if prose:
        return ", ".join(f"{k} {v:,}" for k, v in sorted(errors.items())) or "-"
    return " ".join(f"{k}={v}" for k, v in sorted(errors.items())) or "-"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_table(summaries: dict[str, dict]) -> list[str]:
    """One line per target: availability, goodput, latency percentiles, errors."""
    header = (
        f"{'target':<12}{'requests':>10}{'ok':>10}{'avail':>9}{'goodput/s':>11}"
        f"{'p50 ms':>10}{'p99 ms':>10}{'p99.9 ms':>10}{'max ms':>10}  errors"
    )
    lines = [header]
    for name, s in summaries.items():
        availability = "-" if s["availability"] is None else f"{s['availability']:.4f}"
        goodput = "-" if s["goodput_rps"] is None else f"{s['goodput_rps']:.1f}"
        errors = error_counts(s["errors"])
        lines.append(
            f"{name!s:<12}{s['requests']:>10}{s['ok']:>10}{availability:>9}"
            f"{goodput:>11}{_ms(s['p50_ms']):>10}{_ms(s['p99_ms']):>10}"
            f"{_ms(s['p999_ms']):>10}{_ms(s['max_ms']):>10}  {errors}"
        )
    return lines


def warnings(runs: Runs, summaries: dict[str, dict]) -> list[str]:
    """Saturated generators, lost generators and their missing windows, runs that did not
    complete (and why; a run still ``running`` is one whose driver died), skipped files."""
    lines = [
        f"warning: {name}: a generator's send lag p99 passed 10 ms; these numbers "
        "describe the generator as much as the target"
        for name, s in summaries.items()
        if s["saturated"]
    ]
    for manifest in runs.manifests.values():
        for name, block in manifest.targets.items():
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
