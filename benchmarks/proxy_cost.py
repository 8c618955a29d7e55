"""Benchmark: what the fault-injecting proxy costs with no fault, beside nginx's proxy_pass.

    python benchmarks/proxy_cost.py [--rate 2000] [--seconds 10] [--rounds 3] [--json FILE]

Needs nginx (Debian: ``apt-get install nginx-light``) and taskset.

One nginx worker on core 1 is the upstream (``200 ok``). In front of it, each on core 0:
nginx (one worker, ``proxy_pass`` with kept-alive upstream connections) and
``blastradius serve proxy`` (one process, no route, no fault). A generator on core 1
(``probe_generator.py``: open loop, 32 connections opened first) sends the same GETs at
``--rate`` for ``--seconds`` to the upstream directly and through each proxy, in turn,
``--rounds`` times. From each run: the latency p50 and p99 of the rows (from the
intended send), and each proxy's CPU time (user + system, all its processes) per
request. The figures: the latency each proxy adds (through it, less direct, medians over
the rounds) and its CPU per request, whose inverse is the rate one core proxies.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generator_rate import (  # noqa: E402
    CONNECTIONS,
    GENERATOR_CORE,
    NGINX_TEMP_PATHS,
    TARGET_CORE,
    free_port,
    start_nginx,
)

PROXY_CORE = GENERATOR_CORE  # the proxies have core 0; the upstream and the generator core 1

NGINX_PROXY_CONF = (
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
    + """    upstream backend {{ server {upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""
)


def start_nginx_proxy(workdir: Path, upstream: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    mask = "1".ljust(int(PROXY_CORE) + 1, "0")[::-1]
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_PROXY_CONF.format(prefix=workdir, port=port, mask=mask, upstream=upstream)
    )
    process = subprocess.Popen(["nginx", "-p", str(workdir), "-c", str(conf)])
    wait_answering(f"http://127.0.0.1:{port}/", process)
    return process, f"http://127.0.0.1:{port}/"


def start_blastradius_proxy(upstream_url: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = ["taskset", "-c", PROXY_CORE, sys.executable, "-m", "blastradius.cluster"]
    command += ["serve", "proxy", "--upstream", upstream_url.rstrip("/"), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_answering(f"http://127.0.0.1:{port}/", process)
    return process, f"http://127.0.0.1:{port}/"


def wait_answering(url: str, process: subprocess.Popen) -> None:
    import urllib.request

    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                sys.exit(f"{url} did not answer")
            time.sleep(0.1)


def cpu_s(pid: int) -> float:
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        times = each.cpu_times()
        total += times.user + times.system
    return total


def probe(url: str, rate: float, seconds: float) -> dict:
    command = ["taskset", "-c", TARGET_CORE, sys.executable, str(HERE / "probe_generator.py")]
    command += ["--url", url, "--rate", str(rate), "--seconds", str(seconds)]
    command += ["--connections", str(CONNECTIONS)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    upstream_dir = Path(tempfile.mkdtemp(prefix="blastradius-proxy-upstream-"))
    proxy_dir = Path(tempfile.mkdtemp(prefix="blastradius-proxy-nginx-"))
    upstream, upstream_url = start_nginx(upstream_dir)
    nginx, nginx_url = start_nginx_proxy(
        proxy_dir, upstream_url.removeprefix("http://").rstrip("/")
    )
    ours, ours_url = start_blastradius_proxy(upstream_url)
    targets = {
        "direct": (upstream_url, None),
        "nginx": (nginx_url, nginx),
        "blastradius": (ours_url, ours),
    }
    runs: list[dict] = []
    try:
        for round_ in range(args.rounds):
            for name, (url, process) in targets.items():
                before = cpu_s(process.pid) if process else 0.0
                run = probe(url, args.rate, args.seconds)
                used = cpu_s(process.pid) - before if process else None
                entry = {
                    "round": round_,
                    "via": name,
                    "requests": run["rows"],
                    "ok": run["ok"],
                    "latency_ms": run["latency_ms"],
                    "send_lag_p99_ms": run["send_lag_p99_ms"],
                    "proxy_cpu_us_per_request": None
                    if used is None
                    else round(used / run["rows"] * 1e6, 2),
                }
                print(json.dumps(entry), flush=True)
                runs.append(entry)
    finally:
        for process in (ours, nginx, upstream):
            process.send_signal(signal.SIGTERM)
            process.wait()

    def median(via: str, pick) -> float:
        return statistics.median(pick(r) for r in runs if r["via"] == via)

    result = {"rate": args.rate, "seconds": args.seconds, "rounds": args.rounds, "proxies": {}}
    for via in ("nginx", "blastradius"):
        cpu = median(via, lambda r: r["proxy_cpu_us_per_request"])
        result["proxies"][via] = {
            "added_p50_ms": round(
                median(via, lambda r: r["latency_ms"]["p50"])
                - median("direct", lambda r: r["latency_ms"]["p50"]),
                3,
            ),
            "added_p99_ms": round(
                median(via, lambda r: r["latency_ms"]["p99"])
                - median("direct", lambda r: r["latency_ms"]["p99"]),
                3,
            ),
            "cpu_us_per_request": cpu,
            "requests_per_core_second": round(1e6 / cpu) if cpu else None,
        }
    result["runs"] = runs
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
