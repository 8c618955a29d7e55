"""Benchmark: a generator's CPU per request under Ray (``blastradius run``) and alone.

    python benchmarks/actor_cost.py [--rate 5000] [--seconds 20] [--rounds 3] [--json FILE]

Needs nginx (``apt-get install nginx-light``).

The same open-loop GETs at the same rate, against one nginx worker pinned to core 1,
alternating, ``--rounds`` times:

- alone: ``probe_generator.py``, the generator in a process of its own, no Ray;
- under Ray: ``blastradius run`` on the embedded cluster with one generator, whose
  actor process (``ray::GeneratorActor``) is pinned to core 0 once it appears.

Each process's CPU (user + system, from ``/proc/PID/stat``) is read over the same
steady window, from 3 s after the load's start to 2 s before its end, so start-up
(imports, Ray's worker start) is left out, and divided by the requests due in that
window. The actor's includes everything Ray runs in that process (its core worker's
threads, the progress calls from the driver, live metrics). Ray's other processes
(raylet, GCS, the dashboard's agent, the log monitor) and the shard collector are read
over the same window and reported beside it, per second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import generator_rate as peers
import run_rate

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
WARM_S, TAIL_S = 3.0, 2.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def processes() -> dict[int, str]:
    """Every process's command line, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
    return {pid: line.decode(errors="replace") for pid, line in found.items()}


def window(pids: dict[str, int], start: float, seconds: float) -> dict[str, float]:
    """Each process's CPU seconds over the steady window of a load started at ``start``
    (``time.monotonic``) for ``seconds``."""
    time.sleep(max(0.0, start + WARM_S - time.monotonic()))
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    time.sleep(seconds - WARM_S - TAIL_S)
    return {name: cpu_s(pid) - before[name] for name, pid in pids.items()}


def alone(url: str, rate: float, seconds: float) -> dict[str, float]:
    """The probe's CPU over the window."""
    command = ["taskset", "-c", peers.GENERATOR_CORE, sys.executable]
    command += [str(peers.HERE / "probe_generator.py"), "--url", url, "--rate", str(rate)]
    command += ["--seconds", str(seconds), "--connections", str(peers.CONNECTIONS)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    # The probe starts its load once its connections are open, well within a second.
    start = time.monotonic() + 1.0
    used = window({"generator": process.pid}, start, seconds)
    process.communicate()
    return used


def ray_processes(pids: dict[int, str]) -> dict[str, int]:
    """The run's processes by role, from their command lines."""
    roles = {
        "generator": "ray::GeneratorActor",
        "collector": "ray::ShardCollector",
        "raylet": "raylet/raylet",
        "gcs": "gcs_server",
        "dashboard_agent": "ray::DashboardAgent",
        "log_monitor": "log_monitor.py",
        "dashboard": "dashboard/dashboard.py",
        "driver": "blastradius run",
    }
    return {
        role: pid
        for role, needle in roles.items()
        for pid, line in pids.items()
        if needle in line and "taskset" not in line
    }


def under_ray(url: str, rate: float, seconds: float, workdir: Path) -> dict[str, float]:
    """``blastradius run``'s processes' CPU over the window, the generator's pinned."""
    scenario = workdir / "scenario.yaml"
    scenario.write_text(run_rate.scenario(url, rate, seconds))
    out = workdir / "runs"
    shutil.rmtree(out, ignore_errors=True)
    command = [run_rate.BLASTRADIUS, "run", str(scenario), "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    roles: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while "generator" not in roles and time.monotonic() < deadline:
        roles = ray_processes(processes())
        time.sleep(0.05)
    if "generator" not in roles:
        process.kill()
        raise RuntimeError("no generator actor appeared")
    subprocess.run(
        ["taskset", "-a", "-p", "-c", peers.GENERATOR_CORE, str(roles["generator"])],
        check=True,
        capture_output=True,
    )
    # The driver starts the load 2 s after the generators are ready (driver.START_DELAY_S);
    # their readiness (imports, connections) takes about as long again.
    start = time.monotonic() + 4.0
    used = window(roles, start, seconds)
    process.communicate()
    return used


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="blastradius-actor-cost-"))
    nginx, url = peers.start_nginx(workdir)
    steady = args.seconds - WARM_S - TAIL_S
    requests = args.rate * steady
    rounds = []
    try:
        for i in range(args.rounds):
            probe = alone(url, args.rate, args.seconds)
            ray = under_ray(url, args.rate, args.seconds, workdir)
            rounds.append({"alone": probe, "under_ray": ray})
            print(
                f"round {i + 1}: alone {1e6 * probe['generator'] / requests:.1f} us/request, "
                f"under Ray {1e6 * ray['generator'] / requests:.1f} us/request; Ray's others "
                + ", ".join(
                    f"{name} {100 * s / steady:.1f}%"
                    for name, s in ray.items()
                    if name != "generator"
                ),
                flush=True,
            )
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    alone_us = statistics.median(1e6 * r["alone"]["generator"] / requests for r in rounds)
    ray_us = statistics.median(1e6 * r["under_ray"]["generator"] / requests for r in rounds)
    others = {
        name: statistics.median(100 * r["under_ray"].get(name, 0.0) / steady for r in rounds)
        for name in rounds[0]["under_ray"]
        if name != "generator"
    }
    result = {
        "rate": args.rate,
        "steady_seconds": steady,
        "alone_us_per_request": alone_us,
        "under_ray_us_per_request": ray_us,
        "ratio": ray_us / alone_us,
        "others_percent_of_a_core": others,
        "rounds": rounds,
    }
    print(
        f"median: alone {alone_us:.1f} us, under Ray {ray_us:.1f} us, ratio {ray_us / alone_us:.3f}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
