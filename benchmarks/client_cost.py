"""Benchmark: CPU per request of the generator, this tree against an earlier revision.

    python benchmarks/client_cost.py [--baseline REV] [--rate R ...] [--seconds 15] [--rounds 3]

A rate search (``generator_rate.py``) answers "how fast", but on a shared
machine its answer moves by a third from run to run. This answers "did a
change make each request dearer": both trees' ``probe_generator.py`` send the
same open-loop GETs at each rate (nginx on core 1, the generator pinned to
core 0, 32 connections opened before the start in both), alternating, and the
CPU time (user + system) each probe process used is divided by its requests,
after subtracting the CPU of a tiny run of the same tree (imports and
start-up). The baseline tree is a ``git worktree`` of REV, removed after. The
rates default to 1,000, 5,000, 10,000 and 20,000 req/s: a generator that spins
while it waits spends a core whatever the rate, so its cost per request falls
as the rate rises.

Beside them, in the same rounds, ``floor_sender.py``: the least a Python
client on uvloop does per request (fixed writes on free connections at each
1 ms tick, responses counted by size, nothing recorded). Its cost per request
is what the event loop and the kernel's wake-ups cost at that rate, the floor
under the generator's; the ratio to it is the generator's own cost.
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

FLOOR = "floor (uvloop, no client)"


def cpu_s(tree: Path | None, url: str, rate: float, seconds: float) -> tuple[float, dict]:
    """CPU seconds one probe of ``tree`` (None: the floor sender) used, and what it printed."""
    script = HERE / "floor_sender.py"
    if tree is not None:
        script = tree / "benchmarks" / "probe_generator.py"
    command = ["taskset", "-c", GENERATOR_CORE, sys.executable, str(script)]
    command += ["--url", url, "--rate", str(rate), "--seconds", str(seconds)]
    # Trees from issue 10 on open no connection before the start unless asked.
    if tree is None or takes_connections(tree):
        command += ["--connections", "32"]
    env = {**os.environ, "PYTHONPATH": str(tree or ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used, json.loads(result.stdout.strip().splitlines()[-1])


def takes_connections(tree: Path) -> bool:
    return "--connections" in (tree / "benchmarks" / "probe_generator.py").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", metavar="REV", help="an earlier revision to measure too")
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[1000, 5000, 10000, 20000], metavar="R"
    )
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="blastradius-cost-"))
    baseline = workdir / "baseline"
    trees: dict[str, Path | None] = {"this tree": ROOT, FLOOR: None}
    if args.baseline:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(baseline), args.baseline],
            check=True,
            capture_output=True,
        )
        trees[f"baseline {args.baseline}"] = baseline
    nginx, url = start_nginx(workdir)
    results: dict[float, dict[str, list[float]]] = {}
    lags: dict[float, dict[str, list[float]]] = {}
    try:
        start_up = {name: cpu_s(tree, url, 10, 0.1)[0] for name, tree in trees.items()}
        for rate in args.rate:
            results[rate] = {name: [] for name in trees}
            lags[rate] = {name: [] for name in trees}
            for _ in range(args.rounds):
                for name, tree in trees.items():
                    used, probe = cpu_s(tree, url, rate, args.seconds)
                    per_request_us = (used - start_up[name]) / probe["rows"] * 1e6
                    results[rate][name].append(per_request_us)
                    lag = probe.get("send_lag_p99_ms")
                    lags[rate][name].append(lag)
                    print(
                        f"{rate:>7.0f}/s {name:>26}: {per_request_us:6.1f} us CPU per request "
                        f"(ok {probe['ok']}/{probe['planned']}"
                        + ("" if lag is None else f", lag p99 {lag:.2f} ms")
                        + ")",
                        flush=True,
                    )
    finally:
        nginx.terminate()
        nginx.wait()
        if args.baseline:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                check=False,
                capture_output=True,
            )
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {
        rate: {name: _median(values) for name, values in by_tree.items()}
        for rate, by_tree in results.items()
    }
    for rate, by_tree in medians.items():
        this, floor = by_tree["this tree"], by_tree[FLOOR]
        line = f"{rate:>7.0f}/s median: this tree {this:.1f} us, floor {floor:.1f} us"
        line += f" (ratio {this / floor:.2f})"
        if args.baseline:
            base = by_tree[f"baseline {args.baseline}"]
            line += f", baseline {base:.1f} us (ratio {this / base:.3f})"
        print(line)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "rates": args.rate,
                    "baseline": args.baseline,
                    "seconds": args.seconds,
                    "start_up_cpu_s": start_up,
                    "us_per_request": {str(rate): v for rate, v in results.items()},
                    "send_lag_p99_ms": {str(rate): v for rate, v in lags.items()},
                    "median": {str(rate): v for rate, v in medians.items()},
                },
                indent=2,
            )
        )


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


if __name__ == "__main__":
    main()
