"""The essay's experiments and the ones beyond it: every quick scenario, one table.

    python benchmarks/experiments.py [--out runs] [--reuse] [--json FILE] [SCENARIO.yaml ...]

Runs each scenario (default: every file in ``scenarios/quick/``) through
``blastradius run`` on the embedded local Ray, one after another, then prints
one Markdown table over all of them: availability overall, on the healthy
endpoints and on the slow ones, goodput, p50/p99, errors by kind, and the
concurrency Little's law asks for against what the target had. These are the
figures in README's results section. ``--reuse`` tabulates the newest existing
run of each scenario under ``--out`` instead of running it again.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from blastradius.analysis import load  # noqa: E402
from blastradius.analysis.table import error_counts  # noqa: E402
from blastradius.cluster.demo import comparison  # noqa: E402
from blastradius.cluster.scenario import load_scenario  # noqa: E402

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]  # the CLI, as installed


def run(path: Path, out: str) -> str:
    """Run one scenario through the CLI; its run directory."""
    result = subprocess.run(
        [*BLASTRADIUS, "run", str(path), "--out", out],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise SystemExit(f"{path}: exit {result.returncode}\n{result.stderr[-2000:]}")
    return result.stdout.strip().splitlines()[-1]


def newest_run(path: Path, out: str) -> str | None:
    """The newest completed run of the scenario under ``out``, if any."""
    name = load_scenario(path).name
    found = []
    for manifest in Path(out).glob(f"{name}-*/run.json"):
        data = json.loads(manifest.read_text())
        if data.get("status") == "completed" and data.get("scenario", {}).get("name") == name:
            found.append(str(manifest.parent))
    return max(found, default=None)  # run ids sort by their UTC time


def rows_for(path: Path, run_dir: str) -> list[dict]:
    """One table row per target of the scenario's run (``cluster.demo.comparison``)."""
    rows = comparison(load_scenario(path), load(run_dir).rows)
    return [{"scenario": path.stem, **row, "run_dir": run_dir} for row in rows]


def _f(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def markdown(table: list[dict]) -> list[str]:
    """The README table."""
    lines = [
        "| scenario | target | availability | healthy endpoints | slow endpoint | goodput/s "
        "| p50 ms | p99 ms | in flight needed / there | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in table:
        errors = error_counts(r["errors"], prose=True)
        lines.append(
            f"| {r['scenario']} | {r['target']} | {_f(r['availability'], '.3f')} "
            f"| {_f(r['healthy'], '.3f')} | {_f(r['slow'], '.3f')} "
            f"| {_f(r['goodput_rps'], '.1f')} | {_f(r['p50_ms'], ',.0f')} "
            f"| {_f(r['p99_ms'], ',.0f')} | {_f(r['needed'], ',.0f')} / {r['capacity']} "
            f"| {errors}{' (generator saturated)' if r['saturated'] else ''} |"
        )
    return lines


def main() -> None:
    """Run the scenarios and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", type=Path)
    parser.add_argument("--out", default="runs")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--reuse", action="store_true", help="tabulate existing runs")
    args = parser.parse_args()
    paths = args.scenarios or sorted((ROOT / "scenarios" / "quick").glob("*.yaml"))
    table = []
    for path in paths:
        run_dir = newest_run(path, args.out) if args.reuse else None
        if run_dir is None:
            print(f"running {path} ...", flush=True)
            run_dir = run(path, args.out)
        table += rows_for(path, run_dir)
    print()
    print("\n".join(markdown(table)))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
