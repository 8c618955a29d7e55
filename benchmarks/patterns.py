"""The patterns that contain a blast radius, side by side on the same fault: one table.

    python benchmarks/patterns.py [--fault slow|failing|overload] [--out DIR]
                                  [--repeat 3] [--reuse] [--json FILE] [--only NAME ...]

Every scenario of ``scenarios/patterns/`` (endpoint 9 of ten turns slow, 30 s, at 10 s
of the load and heals at 40 s; 100 requests/s for 50 s, a 1 s deadline), each through
``blastradius run`` on the embedded local Ray, and one row more: HAProxy (Debian's
``haproxy``) in front of the blocking service, a backend per endpoint with ``maxconn
5`` and ``timeout queue 100ms`` (a bulkhead and a shedder nobody here wrote), the
fault injected by blastradius's proxy between the service and the dependency, on the
same schedule. One repeat runs every row once, in order; ``--repeat`` repeats
that, so every row is measured in the same run of this script. ``--fault failing``
makes endpoint 9 fail at once (500) over the same 30 s instead, and ``--fault
overload`` has no fault but 300 requests/s over them (``FAULTS``).

The table: availability over all endpoints, over the healthy ones and over endpoint
9, goodput, p99, the seconds to recover after the heal (from the heal to the first
1 s window from which availability stays at 99% of what it was before the fault;
"-" when it had not by the load's end), and the calls the dependency saw per request
(``dependency_calls`` of run.json; the proxy's count for HAProxy's row). Each figure
is the median of the runs, the lowest and highest in brackets where they differ.
These are the figures in README's table of patterns. ``--reuse`` tabulates the
newest existing runs under ``--out`` instead of running them again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # sibling benchmark scripts

from experiments import cell, newest_runs, run  # noqa: E402
from spread import median_range  # noqa: E402

from blastradius.analysis import load, summary, timeline  # noqa: E402
from blastradius.analysis.stats import recovery_s  # noqa: E402
from blastradius.cluster import launch  # noqa: E402

PATTERNS = ROOT / "scenarios" / "patterns"
ORDER = (
    "none", "timeout", "bulkhead", "breaker", "limit-aimd", "limit-gradient", "shed",
    "retry-naive", "retry-budget", "deadline",
)  # fmt: skip
SLOW = 9
FAULT_S, HEAL_S = 10.0, 40.0
# The failure each scenario meets (``--fault``), as ``--set`` overrides of its file, and
# as the fault proxy's schedule in HAProxy's row. ``slow``: the files as written.
# ``failing``: endpoint 9 answers 500 at once from 10 s to 40 s. ``overload``: no
# fault, but 300 requests/s from 10 s to 40 s, past the 250/s that 50 threads of
# 200 ms can serve.
OVERLOAD = "{stages: [{duration: 10s, rate: 100}, {duration: 30s, rate: 300}, {duration: 10s, rate: 100}], timeout: 1s}"  # noqa: E501
FAULTS: dict[str, tuple[str, ...]] = {
    "slow": (),
    "failing": (
        "dependency.faults=[{at: 10s, endpoint: 9, errors: 1}, {at: 40s, endpoint: 9, errors: 0}]",
    ),
    "overload": ("dependency.faults=[]", f"load={OVERLOAD}"),
}
PROXY_FAULTS = {
    "slow": [
        {"at": f"{FAULT_S:g}s", "endpoint": SLOW, "latency": "30s"},
        {"at": f"{HEAL_S:g}s", "endpoint": SLOW, "latency": "0s"},
    ],
    "failing": [
        {"at": f"{FAULT_S:g}s", "endpoint": SLOW, "errors": 1},
        {"at": f"{HEAL_S:g}s", "endpoint": SLOW, "errors": 0},
    ],
    "overload": [],
}
S = 1_000_000_000
FIGURES = ("availability", "healthy", "slow", "goodput_rps", "p99_ms", "recovery_s", "calls")

HAPROXY_CONFIG = """
global
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout queue 100ms
frontend calls
    bind 127.0.0.1:{port}
    use_backend endpoint%[path,field(3,/)]
{backends}
"""
BACKEND = "backend endpoint{i}\n    server blocking 127.0.0.1:{port} maxconn 5\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def haproxy_scenario(proxy_port: int, dependency: str, front: int, fault: str = "slow") -> dict:
    """The HAProxy row's scenario: its calls through HAProxy, the fault injected by a
    blastradius proxy at ``proxy_port`` in front of the running ``dependency``."""
    routes = [f"/endpoint/{i}" for i in range(10)]
    faults = PROXY_FAULTS[fault]
    load = {"rate": 100, "duration": "50s", "timeout": "1s"}
    if fault == "overload":
        load = yaml.safe_load(OVERLOAD)
    return {
        "name": "patterns-haproxy",
        "load": load,
        "generators": 1,
        "proxies": [
            {"name": "fault", "port": proxy_port, "upstream": dependency, "routes": routes,
             "faults": faults}
        ],
        "targets": [
            {"name": "blocking-haproxy", "urls": [f"http://127.0.0.1:{front}/call/{i}"
                                                   for i in range(10)]}
        ],
    }  # fmt: skip


@contextlib.contextmanager
def haproxy_row(workdir: Path, fault: str) -> Iterator[Path]:
    """The services of HAProxy's row (a dependency, the blocking service calling the
    fault proxy's port, HAProxy in front of it); the scenario file to run."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        raise SystemExit("haproxy: not installed (apt-get install haproxy)")
    proxy_port, front = free_port(), free_port()
    with launch.start("dependency", ["--latency", "200*10"]) as dependency:
        blocking_args = ["--threads", "50", "--dependency", f"http://127.0.0.1:{proxy_port}"]
        with launch.start("blocking", blocking_args) as blocking:
            port = int(blocking.url.rsplit(":", 1)[1])
            backends = "\n".join(BACKEND.format(i=i, port=port) for i in range(10))
            config = workdir / "haproxy.cfg"
            config.write_text(HAPROXY_CONFIG.format(port=front, backends=backends))
            process = subprocess.Popen([binary, "-f", str(config), "-db"])
            try:
                deadline = time.monotonic() + 30
                while True:
                    with (
                        contextlib.suppress(OSError),
                        socket.create_connection(("127.0.0.1", front), timeout=1),
                    ):
                        break
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit("haproxy did not start")
                    time.sleep(0.05)
                scenario = workdir / "haproxy.yaml"
                document = haproxy_scenario(proxy_port, dependency.url, front, fault)
                scenario.write_text(json.dumps(document))
                yield scenario
            finally:
                process.terminate()
                process.wait(10)


def figures(run_dir: str) -> list[dict]:
    """One row per target of a run: the table's figures and the patterns' counts."""
    runs = load(run_dir)
    rows = runs.rows
    (manifest,) = runs.manifests.values()
    found = []
    for target in manifest.targets:
        mine = rows[rows["target"] == target]
        block = manifest.target(target)
        whole = summary(mine)[target]
        line = timeline(mine, S, start_ns=block.start_ns)
        t_s, availability = line["t_s"].to_numpy(), line["availability"].to_numpy()
        before = availability[t_s + 1 <= FAULT_S].mean()
        if block.dependency_calls is not None:
            calls = block.dependency_calls
        else:  # HAProxy's row: the fault proxy in front of the dependency counted them
            calls = sum(r.requests for p in block.proxies.values() for r in p.routes)
        slow = mine["endpoint"].to_numpy() == SLOW
        found.append(
            {
                "scenario": manifest.scenario.get("name", "").removeprefix("patterns-"),
                "target": target,
                "availability": whole["availability"],
                "healthy": float(mine["ok"].to_numpy()[~slow].mean()),
                "slow": float(mine["ok"].to_numpy()[slow].mean()),
                "goodput_rps": whole["goodput_rps"],
                "p99_ms": whole["p99_ms"],
                "recovery_s": recovery_s(t_s, availability, HEAL_S, 0.99 * before),
                "calls": calls / len(mine),
                "counts": {} if block.patterns is None else dict(block.patterns.counts),
                "run_dir": run_dir,
            }
        )
    return found


def spread(runs: list[list[dict]]) -> list[dict]:
    """One row per target over repeated runs: each figure's median and its range (a
    recovery that did not happen in some run is None there, and the median counts it
    as the longest)."""
    table = []
    for per_target in zip(*runs, strict=True):
        row = dict(per_target[(len(per_target) - 1) // 2])
        for figure in FIGURES:
            values = [r[figure] for r in per_target]
            if figure == "recovery_s":
                values = [np.inf if v is None else v for v in values]
            middle, low, high = median_range(values)
            row[figure] = None if middle == np.inf else middle
            row[f"{figure}_range"] = [low, high]
        row["runs"] = [r["run_dir"] for r in per_target]
        row.pop("run_dir")
        table.append(row)
    return table


def _recovery(row: dict) -> str:
    low, high = row["recovery_s_range"]
    middle = "-" if row["recovery_s"] is None else f"{row['recovery_s']:.0f}"
    if low == high:
        return middle
    high_text = "-" if high == np.inf else f"{high:.0f}"
    return f"{middle} ({low:.0f}-{high_text})"


def markdown(table: list[dict]) -> list[str]:
    """README's table of patterns."""
    lines = [
        "| pattern | service | availability | healthy endpoints | endpoint 9 | goodput/s "
        "| p99 ms | recovery s | dependency calls per request |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        lines.append(
            f"| {r['scenario']} | {r['target']} | {cell(r, 'availability', '.3f')} "
            f"| {cell(r, 'healthy', '.3f')} | {cell(r, 'slow', '.3f')} "
            f"| {cell(r, 'goodput_rps', '.1f')} | {cell(r, 'p99_ms', ',.0f')} "
            f"| {_recovery(r)} | {cell(r, 'calls', '.2f')} |"
        )
    return lines


def main() -> None:
    """Run every row ``--repeat`` times and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="where the runs go (default runs/patterns-FAULT)")
    parser.add_argument("--fault", choices=FAULTS, default="slow", help="the failure met")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each row")
    parser.add_argument("--reuse", action="store_true", help="tabulate existing runs")
    parser.add_argument("--only", nargs="*", default=None, help="these rows (and haproxy)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: must be >= 1")
    args.out = args.out or f"runs/patterns-{args.fault}"
    overrides = FAULTS[args.fault]
    names = [n for n in ORDER if args.only is None or n in args.only]
    paths = [PATTERNS / f"{name}.yaml" for name in names]
    runs: dict[str, list[str]] = {}
    for path in paths:
        runs[path.stem] = newest_runs(path, args.out, args.repeat) if args.reuse else []
    with tempfile.TemporaryDirectory() as workdir:
        haproxy = Path(workdir) / "haproxy.yaml"  # (its ports are not known before it runs)
        haproxy.write_text(json.dumps(haproxy_scenario(1, "http://127.0.0.1:2", 3)))
        runs["haproxy"] = newest_runs(haproxy, args.out, args.repeat) if args.reuse else []
        for i in range(args.repeat):
            for path in paths:
                if len(runs[path.stem]) <= i:
                    print(f"{path.stem} ({i + 1} of {args.repeat}) ...", flush=True)
                    runs[path.stem].append(run(path, args.out, overrides))
            if len(runs["haproxy"]) <= i:
                print(f"haproxy ({i + 1} of {args.repeat}) ...", flush=True)
                with haproxy_row(Path(workdir), args.fault) as scenario:
                    runs["haproxy"].append(run(scenario, args.out))
    table = []
    for run_dirs in runs.values():
        table += spread([figures(run_dir) for run_dir in run_dirs])
    print()
    print("\n".join(markdown(table)))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=2, default=float))


if __name__ == "__main__":
    main()
