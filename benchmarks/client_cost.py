"""Benchmark: CPU per request of the generator, this tree against an earlier revision.

    python benchmarks/client_cost.py --baseline REV [--rate 6000] [--seconds 15] [--rounds 3]

A rate search (``generator_rate.py``) answers "how fast", but on a shared
machine its answer moves by a third from run to run. This answers "did a
change make each request dearer": both trees' ``probe_generator.py`` send the
same open-loop GETs at a rate both keep (nginx on core 1, the generator pinned
to core 0, 32 connections opened before the start in both), alternating, and
the CPU time (user + system) each probe process used is divided by its
requests, after subtracting the CPU of a tiny run of the same tree (imports
and start-up). The baseline tree is a ``git worktree`` of REV, removed after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from generator_rate import GENERATOR_CORE, start_nginx  # noqa: E402


def cpu_s(tree: Path, url: str, rate: float, seconds: float, warm: bool) -> tuple[float, dict]:
    """CPU seconds one probe of ``tree`` used, and what it printed."""
    command = [
        "taskset",
        "-c",
        GENERATOR_CORE,
        sys.executable,
        str(tree / "benchmarks" / "probe_generator.py"),
    ]
    command += ["--url", url, "--rate", str(rate), "--seconds", str(seconds)]
    if warm:  # trees from issue 10 on open no connection before the start unless asked
        command += ["--connections", "32"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used, json.loads(result.stdout.strip().splitlines()[-1])


def takes_connections(tree: Path) -> bool:
    return "--connections" in (tree / "benchmarks" / "probe_generator.py").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, metavar="REV")
    parser.add_argument("--rate", type=float, default=6000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="blastradius-cost-"))
    baseline = workdir / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
        check=True,
        capture_output=True,
    )
    trees = {"this tree": ROOT, f"baseline {args.baseline}": baseline}
    nginx, url = start_nginx(workdir)
    results: dict[str, list[float]] = {name: [] for name in trees}
    try:
        start_up = {
            name: cpu_s(tree, url, 10, 0.1, takes_connections(tree))[0]
            for name, tree in trees.items()
        }
        for _ in range(args.rounds):
            for name, tree in trees.items():
                used, probe = cpu_s(tree, url, args.rate, args.seconds, takes_connections(tree))
                per_request_us = (used - start_up[name]) / probe["rows"] * 1e6
                results[name].append(per_request_us)
                lag = probe["send_lag_p99_ms"]
                print(
                    f"{name:>24}: {per_request_us:6.1f} us CPU per request "
                    f"(ok {probe['ok']}/{probe['planned']}, lag p99 {lag:.2f} ms)",
                    flush=True,
                )
    finally:
        nginx.terminate()
        nginx.wait()
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {name: sorted(values)[len(values) // 2] for name, values in results.items()}
    this, base = medians.values()
    print(f"median: this tree {this:.1f} us, baseline {base:.1f} us, ratio {this / base:.3f}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rate": args.rate,
                    "seconds": args.seconds,
                    "start_up_cpu_s": start_up,
                    "us_per_request": results,
                    "median": medians,
                    "ratio": this / base,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
