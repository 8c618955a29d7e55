"""The essay's experiments and the ones beyond it: every quick scenario, one table.

    python benchmarks/experiments.py [--out runs] [--repeat 3] [--reuse] [--json FILE]
                                     [SCENARIO.yaml ...]

Runs each scenario (default: every file in ``scenarios/quick/`` but the sessions
ones, ``*-sessions.yaml``, and HTTP/2's, ``*-http2.yaml``, which README tabulates on
their own) through
``blastradius run`` on the embedded local Ray, ``--repeat`` times, one run after
another, then prints one Markdown table over all of them: availability overall,
on the healthy endpoints and on the slow ones, goodput, p50/p99, errors by kind
(of the median run), and the concurrency Little's law asks for against what the
target had. Each figure is the median of the runs, with the lowest and highest
in brackets where they differ: its spread. These are the figures in README's
results section. ``--reuse`` tabulates the newest existing runs of each scenario
under ``--out`` instead of running them again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark scripts

from spread import median_range  # noqa: E402

from blastradius.analysis import load  # noqa: E402
from blastradius.analysis.table import error_counts  # noqa: E402
from blastradius.cluster.demo import comparison  # noqa: E402
from blastradius.cluster.scenario import load_scenario  # noqa: E402

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]  # the CLI, as installed


def run(path: Path, out: str, overrides: tuple[str, ...] = ()) -> str:
    """Run one scenario through the CLI (each of ``overrides`` a ``--set``); its run
    directory."""
    sets = [arg for override in overrides for arg in ("--set", override)]
    result = subprocess.run(
        [*BLASTRADIUS, "run", str(path), "--out", out, *sets],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"{path}: exit {result.returncode}\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def newest_runs(path: Path, out: str, count: int) -> list[str]:
    """The newest ``count`` completed runs of the scenario under ``out`` (fewer if
    there are not that many), oldest first."""
    name = load_scenario(path).name
    found = []
    for manifest in Path(out).glob(f"{name}-*/run.json"):
        data = json.loads(manifest.read_text())
        if data.get("status") == "completed" and data.get("scenario", {}).get("name") == name:
            found.append(str(manifest.parent))
    return sorted(found)[-count:]  # run ids sort by their UTC time


def rows_for(path: Path, run_dir: str) -> list[dict]:
    """One table row per target of the scenario's run (``cluster.demo.comparison``)."""
    rows = comparison(load_scenario(path), load(run_dir).rows)
    return [{"scenario": path.stem, **row, "run_dir": run_dir} for row in rows]


FIGURES = ("availability", "healthy", "slow", "sessions", "goodput_rps", "p50_ms", "p99_ms")


def spread(runs: list[list[dict]]) -> list[dict]:
    """One row per target over repeated runs of a scenario: each of ``FIGURES`` as the
    median (the lower middle run for an even count), with ``<figure>_range`` its
    lowest and highest; the errors and saturation of the run whose availability is the
    median. ``runs`` holds each run's ``rows_for``, in the same target order."""
    table = []
    for per_target in zip(*runs, strict=True):
        by_availability = sorted(per_target, key=lambda r: r["availability"])
        row = dict(by_availability[(len(per_target) - 1) // 2])
        for figure in FIGURES:
            values = [r[figure] for r in per_target if r[figure] is not None]
            if len(values) < len(per_target):
                row[figure], row[f"{figure}_range"] = None, None
                continue
            row[figure], low, high = median_range(values)
            row[f"{figure}_range"] = [low, high]
        row["runs"] = [r["run_dir"] for r in per_target]
        row.pop("run_dir", None)
        table.append(row)
    return table


def _f(value: float | None, pattern: str, bounds: list[float] | None = None) -> str:
    if value is None:
        return "-"
    text = format(value, pattern)
    if bounds is None:
        return text
    low, high = (format(b, pattern) for b in bounds)
    return text if low == high else f"{text} ({low}-{high})"


def cell(row: dict, figure: str, pattern: str) -> str:
    """A figure's median and its spread."""
    return _f(row[figure], pattern, row.get(f"{figure}_range"))


def markdown(table: list[dict]) -> list[str]:
    """The README table (with a column of session availability when a target has
    sessions; its other figures then count the calls sent)."""
    sessions = any(r.get("sessions") is not None for r in table)
    lines = [
        "| scenario | target | availability | healthy endpoints | slow endpoint "
        f"{'| sessions completed ' if sessions else ''}| goodput/s "
        "| p50 ms | p99 ms | in flight needed / there | errors |",
        f"|---|---|---:|---:|---:|{'---:|' if sessions else ''}---:|---:|---:|---|---|",
    ]
    for r in table:
        errors = error_counts(r["errors"], prose=True)
        session_cell = f"| {cell(r, 'sessions', '.3f')} " if sessions else ""
        lines.append(
            f"| {r['scenario']} | {r['target']} | {cell(r, 'availability', '.3f')} "
            f"| {cell(r, 'healthy', '.3f')} | {cell(r, 'slow', '.3f')} {session_cell}"
            f"| {cell(r, 'goodput_rps', '.1f')} | {cell(r, 'p50_ms', ',.0f')} "
            f"| {cell(r, 'p99_ms', ',.0f')} | {_f(r['needed'], ',.0f')} / {r['capacity']} "
            f"| {errors}{' (generator saturated)' if r['saturated'] else ''} |"
        )
    return lines


def main() -> None:
    """Run the scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", type=Path)
    parser.add_argument("--out", default="runs")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each scenario")
    parser.add_argument("--reuse", action="store_true", help="tabulate existing runs")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: must be >= 1")
    quick = sorted((ROOT / "scenarios" / "quick").glob("*.yaml"))
    own_tables = ("-sessions", "-http2")  # README tabulates these on their own
    paths = args.scenarios or [p for p in quick if not p.stem.endswith(own_tables)]
    table = []
    for path in paths:
        run_dirs = newest_runs(path, args.out, args.repeat) if args.reuse else []
        for i in range(len(run_dirs), args.repeat):
            print(f"running {path} ({i + 1} of {args.repeat}) ...", flush=True)
            run_dirs.append(run(path, args.out))
        table += spread([rows_for(path, run_dir) for run_dir in run_dirs])
    print()
    print("\n".join(markdown(table)))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
