"""Benchmark: 3-step sessions one core keeps, blastradius beside Locust, in one run.

    python benchmarks/session_rate.py [--seconds 10] [--locust-seconds 15] [--json FILE]

Needs nginx (``apt-get install nginx-light``), taskset, and the bench extra
(``pip install -e '.[bench]'``, which brings Locust).

The same flow from every load generator, against one nginx worker pinned to core 1
that plays a shop: ``POST /login`` answers a token in JSON; ``GET /items`` answers
an item id in JSON, and 401 without the token; ``POST /pay/ID`` answers 200, and
401 without the token. Each generator is pinned to core 0.

1. blastradius (``probe_sessions.py``): YAML-style steps capturing the token and the
   id, open loop, every step to Parquet: a search (doubling, then bisecting to 5%)
   for the most sessions a second it keeps (99% of the steps ok, step send-lag p99
   under 10 ms), and the CPU per step at that rate.
2. Locust, ``HttpUser`` and ``FastHttpUser``, one process each, closed loop with no
   wait, the three requests a task (the token and the id read from the answers), at
   16, 64 and 256 users: their sessions a second (requests over three), each's best.

The figure of merit is (1) over the best of (2) for ``FastHttpUser``: sessions per
second per core.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generator_rate as peers  # noqa: E402

SHOP = """
        location = /login { default_type application/json; return 200 '{"token":"t-1"}'; }
        location = /items {
            default_type application/json;
            if ($http_authorization != "Bearer t-1") { return 401; }
            return 200 '{"items":[{"id":7}]}';
        }
        location /pay/ {
            if ($http_authorization != "Bearer t-1") { return 401; }
            return 200 "paid\\n";
        }
"""

LOCUSTFILE = """
from locust import {kind}, task


class Shopper({kind}):
    @task
    def checkout(self):
        token = self.client.post("/login", json={{"user": "bench"}}).json()["token"]
        auth = {{"Authorization": "Bearer " + token}}
        item = self.client.get("/items", headers=auth).json()["items"][0]["id"]
        self.client.post(f"/pay/{{item}}", headers=auth)
"""


def start_shop(workdir: Path):
    """nginx as the shop, one worker on the target core."""
    return peers.start_nginx(workdir, locations=SHOP)


def probe(url: str, rate: float, seconds: float) -> dict:
    command = ["taskset", "-c", peers.GENERATOR_CORE, sys.executable]
    command += [str(HERE / "probe_sessions.py"), "--url", url, "--rate", str(rate)]
    command += ["--seconds", str(seconds), "--connections", str(peers.CONNECTIONS)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def locust_sessions(url: str, kind: str, users: int, seconds: int, workdir: Path) -> float:
    """Locust's sessions a second (its requests a second over three), one process."""
    locustfile = workdir / f"locust_{kind}.py"
    locustfile.write_text(LOCUSTFILE.format(kind=kind))
    prefix = workdir / f"locust-{kind}-{users}"
    command = ["taskset", "-c", peers.GENERATOR_CORE, sys.executable, "-m", "locust"]
    command += ["-f", str(locustfile), "--headless", "--host", url.rstrip("/")]
    command += ["-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--reset-stats"]
    command += ["--csv", str(prefix), "--only-summary", "--loglevel", "ERROR"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    with open(f"{prefix}_stats.csv") as stats:
        for row in csv.DictReader(stats):
            if row["Name"] == "Aggregated":
                if int(row["Failure Count"]):
                    raise RuntimeError(f"Locust {kind} failed requests: {row}")
                return float(row["Requests/s"]) / 3
    raise RuntimeError("Locust wrote no aggregated stats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--locust-seconds", type=int, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="blastradius-sessions-"))
    nginx, url = start_shop(workdir)
    started = time.monotonic()
    try:
        best, runs = peers.search(
            lambda rate: probe(url, rate, args.seconds), "sessions", 500.0, log
        )
        at_best = max(
            (r for r in runs if r["kept_up"] and r["rate"] == best), key=lambda r: r["ok"]
        )
        locust: dict[str, dict[int, float]] = {}
        for kind in ("HttpUser", "FastHttpUser"):
            locust[kind] = {}
            for users in (16, 64, 256):
                found = locust_sessions(url, kind, users, args.locust_seconds, workdir)
                locust[kind][users] = found
                log(f"  locust {kind:12s} {users:4d} users: {found:8.0f} sessions/s")
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    fast = max(locust["FastHttpUser"].values())
    plain = max(locust["HttpUser"].values())
    results = {
        "blastradius_sessions_per_s": best,
        "blastradius_cpu_us_per_step": at_best["cpu_s"] / at_best["rows"] * 1e6,
        "locust_fast_sessions_per_s": fast,
        "locust_http_sessions_per_s": plain,
        "ratio_to_fast": best / fast,
        "ratio_to_http": best / plain,
        "locust": locust,
        "probes": runs,
        "wall_s": time.monotonic() - started,
    }
    log("")
    log(f"blastradius, one core, open loop, every step to Parquet: {best:.0f} sessions/s")
    log(f"  CPU per step at that rate: {results['blastradius_cpu_us_per_step']:.1f} us")
    log(f"Locust FastHttpUser, best of 16/64/256 users: {fast:.0f} sessions/s")
    log(f"Locust HttpUser, best of 16/64/256 users: {plain:.0f} sessions/s")
    log(f"ratio: {best / fast:.2f}x FastHttpUser, {best / plain:.2f}x HttpUser")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
