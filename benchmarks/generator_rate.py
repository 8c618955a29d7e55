"""Benchmark: the highest open-loop rate one generator keeps on one core, beside Locust.

    python benchmarks/generator_rate.py [--seconds 10] [--long-seconds 120] [--json FILE]
                                        [--post-json-bytes 1024]

Needs nginx (Debian: ``apt-get install nginx-light``), taskset, and the bench
extra (``pip install -e '.[bench]'``, which brings Locust).

In one run, against the same nginx target on loopback (one worker, pinned to
core 1), each load generator pinned to core 0:

1. blastradius: a search over open-loop rates for the highest one it keeps:
   at least 99% of the planned requests ok and send lag p99 under 10 ms, every
   request recorded and written to Parquet; 32 connections opened before the
   start (``load.connections``; nginx takes idle connections at no cost);
2. Locust, FastHttpUser, one process, as many requests per second as it can
   (closed loop, no wait time), at several user counts; its best is kept;
3. (1) and (2) again for a POST of a JSON body (1 KB by default), the same
   request from both;
4. a long blastradius run at half the highest GET rate: RSS over time (flat?)
   and Parquet bytes per request.

The figure of merit is the ratio of (1) to (2): requests per second per core.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GENERATOR_CORE, TARGET_CORE = "0", "1"
LAG_LIMIT_MS, OK_FRACTION = 10.0, 0.99

# nginx's temporary files under its own prefix (a benchmark's nginx runs unprivileged).
NGINX_TEMP_PATHS = """
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
"""

NGINX_CONF = (
    """
daemon off;
worker_processes 1;
worker_cpu_affinity {mask};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 120s;"""
    + NGINX_TEMP_PATHS
    + """    server {{
        listen 127.0.0.1:{port};
{locations}
    }}
}}
"""
)
OK_LOCATION = '        location / { return 200 "ok\\n"; }'  # the benchmarks' target

LOCUSTFILE = """
from locust import FastHttpUser, task


class Hit(FastHttpUser):
    @task
    def hit(self):
        self.client.get("/")
"""

LOCUSTFILE_POST = """
import json

from locust import FastHttpUser, task

BODY = json.dumps({{"data": "x" * {filler}}}, separators=(",", ":")).encode()  # as the probe's


class Post(FastHttpUser):
    @task
    def post(self):
        self.client.post("/", data=BODY, headers={{"Content-Type": "application/json"}})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_nginx(
    workdir: Path, cores: str | None = TARGET_CORE, locations: str = OK_LOCATION
) -> tuple[subprocess.Popen, str]:
    """One nginx worker on core ``cores`` (None: on any), serving ``locations``."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        sys.exit("nginx is needed: apt-get install nginx-light")
    port = free_port()
    # The bit of core ``cores``, or every core's.
    mask = "1" * (os.cpu_count() or 1) if cores is None else "1".ljust(int(cores) + 1, "0")[::-1]
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=workdir, port=port, mask=mask, locations=locations))
    process = subprocess.Popen([nginx, "-p", str(workdir), "-c", str(conf)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process, f"http://127.0.0.1:{port}/"
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit("nginx did not start; see " + str(workdir / "error.log"))
            time.sleep(0.05)


CONNECTIONS = 32  # opened before the start, as wrk does and as Locust's users do at spawn


def probe(url: str, rate: float, seconds: float, post_bytes: int = 0) -> dict:
    command = [
        "taskset",
        "-c",
        GENERATOR_CORE,
        sys.executable,
        str(HERE / "probe_generator.py"),
        "--url",
        url,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
        "--post-json-bytes",
        str(post_bytes),
        "--connections",
        str(CONNECTIONS),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def keeps_up(run: dict) -> bool:
    lag = run["send_lag_p99_ms"]
    return run["ok"] >= OK_FRACTION * run["planned"] and lag is not None and lag < LAG_LIMIT_MS


def highest_rate(url: str, seconds: float, log, post_bytes: int = 0) -> tuple[float, list[dict]]:
    """Double from 1000 req/s until the generator falls behind, then bisect to 5%."""
    return search(lambda rate: probe(url, rate, seconds, post_bytes), "blastradius", 1000.0, log)


def search(run_at, name: str, rate: float, log) -> tuple[float, list[dict]]:
    """The highest rate ``run_at(rate)`` keeps (``keeps_up``): double from ``rate`` until
    it falls behind, then bisect to 5%; the rate and every probe's figures."""
    runs, low, high = [], 0.0, None
    while high is None or (high - low) / high > 0.05:
        # A rate counts as too high only if a second probe at it falls behind too:
        # one stall of the shared machine must not end the search.
        for _ in range(2):
            run = run_at(rate)
            run["kept_up"] = keeps_up(run)
            runs.append(run)
            wall = f", {run['wall_s']:.1f} s" if "wall_s" in run else ""
            log(
                f"  {name} {rate:8.0f} req/s: ok {run['ok']}/{run['planned']}, lag p99 "
                f"{run['send_lag_p99_ms']:.2f} ms{wall} -> "
                f"{'kept up' if run['kept_up'] else 'behind'}"
            )
            if run["kept_up"]:
                break
        if run["kept_up"]:
            low = rate
            rate = rate * 2 if high is None else (low + high) / 2
        else:
            high = rate
            rate = (low + high) / 2
        if high is not None and low == 0 and rate < 250:
            break
    return low, runs


def locust_rps(
    url: str,
    users: int,
    seconds: int,
    workdir: Path,
    post_bytes: int = 0,
    cores: str | None = GENERATOR_CORE,
) -> float:
    """Locust's requests per second, one process on core ``cores`` (None: on any)."""
    locustfile = workdir / f"locustfile_{post_bytes}.py"
    filler = max(post_bytes - 11, 0)
    locustfile.write_text(LOCUSTFILE_POST.format(filler=filler) if post_bytes else LOCUSTFILE)
    prefix = workdir / f"locust-{post_bytes}-{users}"
    command = [
        *(["taskset", "-c", cores] if cores is not None else []),
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(locustfile),
        "--headless",
        "--host",
        url.rstrip("/"),
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--reset-stats",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "ERROR",
    ]
    subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    with open(f"{prefix}_stats.csv") as stats:
        for row in csv.DictReader(stats):
            if row["Name"] == "Aggregated":
                return float(row["Requests/s"])
    raise RuntimeError("Locust wrote no aggregated stats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="length of each rate probe")
    parser.add_argument("--locust-seconds", type=int, default=15)
    parser.add_argument("--long-seconds", type=float, default=120, help="length of the memory run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--post-json-bytes", type=int, default=1024, help="size of the POST case's JSON body"
    )
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="blastradius-bench-"))
    nginx, url = start_nginx(workdir)
    try:
        log(f"target: nginx on core {TARGET_CORE} at {url}; generators on core {GENERATOR_CORE}")
        best, runs = highest_rate(url, args.seconds, log)
        locust = {}
        for users in (16, 64, 256):
            locust[users] = locust_rps(url, users, args.locust_seconds, workdir)
            log(f"  locust {users:4d} users: {locust[users]:8.0f} req/s")
        post = args.post_json_bytes
        log(f"POST of a {post}-byte JSON body:")
        post_best, post_runs = highest_rate(url, args.seconds, log, post)
        locust_post = {}
        for users in (16, 64, 256):
            locust_post[users] = locust_rps(url, users, args.locust_seconds, workdir, post)
            log(f"  locust POST {users:4d} users: {locust_post[users]:8.0f} req/s")
        long_rate = best / 2
        log(f"  long run: {long_rate:.0f} req/s for {args.long_seconds:.0f} s ...")
        long_run = probe(url, long_rate, args.long_seconds)
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    rss = [mib for _, mib in long_run["rss_mib"]]
    locust_best = max(locust.values())
    results = {
        "blastradius_max_rps": best,
        "locust_max_rps": locust_best,
        "ratio": best / locust_best,
        "locust_by_users": locust,
        "probes": runs,
        "post": {
            "json_bytes": post,
            "blastradius_max_rps": post_best,
            "locust_max_rps": max(locust_post.values()),
            "ratio": post_best / max(locust_post.values()),
            "locust_by_users": locust_post,
            "probes": post_runs,
        },
        "long_run": {
            "rate": long_rate,
            "seconds": args.long_seconds,
            "ok": long_run["ok"],
            "planned": long_run["planned"],
            "send_lag_p99_ms": long_run["send_lag_p99_ms"],
            "parquet_bytes_per_request": long_run["parquet_bytes_per_request"],
            "rss_mib_at_10s": rss[min(9, len(rss) - 1)],
            "rss_mib_at_end": rss[-1],
            "rss_mib_max": max(rss),
            "rss_mib_every_10s": rss[9::10],
        },
    }
    log("")
    log(f"blastradius, one core, open loop, every request to Parquet: {best:.0f} req/s")
    log(
        f"Locust FastHttpUser, one process, closed loop, best of 16/64/256 users: "
        f"{locust_best:.0f} req/s"
    )
    log(f"ratio: {results['ratio']:.2f}x")
    pr = results["post"]
    log(
        f"POST {post} B JSON: blastradius {post_best:.0f} req/s, Locust "
        f"{pr['locust_max_rps']:.0f} req/s, ratio {pr['ratio']:.2f}x"
    )
    lr = results["long_run"]
    log(
        f"long run at {long_rate:.0f} req/s for {args.long_seconds:.0f} s: RSS "
        f"{lr['rss_mib_at_10s']:.0f} MiB at 10 s, {lr['rss_mib_at_end']:.0f} MiB at the end "
        f"(max {lr['rss_mib_max']:.0f}); {lr['parquet_bytes_per_request']:.1f} bytes of Parquet "
        f"per request; ok {lr['ok']}/{lr['planned']}, lag p99 {lr['send_lag_p99_ms']:.2f} ms"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
