"""Benchmark: the rate ``blastradius run`` keeps on a machine it shares, beside Locust and wrk.

    python benchmarks/run_rate.py [--seconds 10] [--json FILE] [--skip NAME ...]

Needs nginx (``apt-get install nginx-light``), wrk (``apt-get install wrk``) and the
bench extra (``pip install -e '.[bench]'``, which brings Locust).

The user's path, in one run, against one nginx worker on loopback; nothing pinned:
nginx, Ray's processes, the generator and the shard collector share the machine's
cores, as they do on a laptop.

1. ``blastradius run SCENARIO`` on the embedded cluster, one generator, open loop, every
   request to Parquet: a search (doubling, then bisecting to 5%) for the highest rate
   it keeps (at least 99% of the planned requests ok, send-lag p99 under 10 ms, read
   back with ``blastradius analyze --json``). A rate is too high only when two runs
   at it fall behind. Each run's wall time, Ray's start included, is kept.
2. Locust, ``FastHttpUser``, one process, closed loop with no wait, 16, 64 and 256
   users; its best is kept.
3. wrk, one thread, 32 connections, closed loop: what a C client gets from this
   nginx on this machine.
4. The generator alone (``probe_generator.py``, no Ray), pinned to one core, the same
   search: the figure ``generator_rate.py`` records, beside the others.

The figure of merit is (1) over (2), each the best it did in this run.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import generator_rate as peers

CONNECTIONS = peers.CONNECTIONS
BLASTRADIUS = str(Path(sys.executable).with_name("blastradius"))  # the installed command


def scenario(url: str, rate: float, seconds: float) -> str:
    """One generator, open loop, against ``url``."""
    return json.dumps(
        {
            "name": "bench",
            "load": {
                "rate": rate,
                "duration": f"{seconds}s",
                "timeout": "1s",
                "connections": CONNECTIONS,
            },
            "generators": 1,
            "targets": [{"name": "nginx", "url": url}],
        }
    )


def run_probe(url: str, rate: float, seconds: float, workdir: Path) -> dict:
    """``blastradius run`` at ``rate``; its summary as ``probe_generator`` reports one."""
    path = workdir / "scenario.yaml"
    path.write_text(scenario(url, rate, seconds))
    out = workdir / "runs"
    shutil.rmtree(out, ignore_errors=True)
    started = time.monotonic()
    subprocess.run(
        [BLASTRADIUS, "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - started
    (run_dir,) = out.iterdir()
    analysed = subprocess.run(
        [BLASTRADIUS, "analyze", str(run_dir), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    summary = json.loads(analysed.stdout)["targets"]["nginx"]
    return {
        "rate": rate,
        "planned": int(rate * seconds),
        "ok": summary["ok"],
        "send_lag_p99_ms": summary["send_lag_p99_ms"],
        "wall_s": wall,
    }


def highest_run_rate(url: str, seconds: float, workdir: Path, log) -> tuple[float, list[dict]]:
    """As ``generator_rate.highest_rate``, each probe a ``blastradius run``."""
    probe = lambda rate: run_probe(url, rate, seconds, workdir)  # noqa: E731
    return peers.search(probe, "blastradius run", 2000.0, log)


def wrk_rps(url: str, seconds: int) -> float:
    """wrk's requests per second: one thread, ``CONNECTIONS`` connections."""
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is needed: apt-get install wrk")
    command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if found is None:
        raise RuntimeError(f"wrk printed no rate: {output!r}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each probe")
    parser.add_argument("--locust-seconds", type=int, default=15)
    parser.add_argument("--skip", nargs="*", default=[], help="run, locust, wrk or pinned")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="blastradius-run-rate-"))
    nginx, url = peers.start_nginx(workdir, cores=None)
    results: dict = {"seconds": args.seconds, "connections": CONNECTIONS}
    try:
        log(f"target: nginx, one worker, unpinned, at {url}")
        if "run" not in args.skip:
            best, runs = highest_run_rate(url, args.seconds, workdir, log)
            results["run"] = {"max_rps": best, "probes": runs}
        if "locust" not in args.skip:
            locust = {}
            for users in (16, 64, 256):
                locust[users] = peers.locust_rps(
                    url, users, args.locust_seconds, workdir, cores=None
                )
                log(f"  locust {users:4d} users: {locust[users]:8.0f} req/s")
            results["locust"] = {"max_rps": max(locust.values()), "by_users": locust}
        if "wrk" not in args.skip:
            results["wrk"] = {"max_rps": wrk_rps(url, int(args.seconds))}
            log(f"  wrk: {results['wrk']['max_rps']:8.0f} req/s")
        if "pinned" not in args.skip:
            pinned, probes = peers.highest_rate(url, args.seconds, log)
            results["pinned"] = {"max_rps": pinned, "core": peers.GENERATOR_CORE, "probes": probes}
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    if "run" in results and "locust" in results:
        results["ratio_run_to_locust"] = results["run"]["max_rps"] / results["locust"]["max_rps"]
    log("")
    for name in ("run", "locust", "wrk", "pinned"):
        if name in results:
            log(f"{name:>8}: {results[name]['max_rps']:8.0f} req/s")
    if "ratio_run_to_locust" in results:
        log(f"blastradius run / Locust: {results['ratio_run_to_locust']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
