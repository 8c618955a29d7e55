"""Walk-through: the blast radius of a slow dependency on nginx, a server we did not write.

    python benchmarks/nginx_blast_radius.py [--rate 100] [--seconds 30] [--connections 256]
                                            [--repeat 3] [--json FILE]

Needs nginx (Debian: ``apt-get install nginx-light``).

The service under test is nginx from Debian's package: one worker with a fixed
connection pool (``worker_connections 256``, as a blocking service has a fixed pool of
threads), serving ``/fast/`` and ``/slow/`` by ``proxy_pass`` to its dependency. Its
dependency is ``blastradius serve dependency`` (every endpoint 5 ms), reached through
the fault-injecting proxy on a fixed port, as nginx's configuration says. The scenario
(a ``proxies:`` block: the route ``/endpoint/1`` is what ``/slow/`` calls) makes that
route take 30 s from 10 s into the load; nginx waits up to 60 s for its upstream
(``proxy_read_timeout``, its default). The load: ``--rate`` requests a second, half to
each path, 1 s deadline, open loop.

Printed: for each of ``--repeat`` runs, each path's availability before the fault and
after it, from the rows, and what the proxy injected; then each availability's median
and its spread (lowest and highest) over the runs. The question is the essay's: does
the slow half take the fast half down with it?
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generator_rate import NGINX_TEMP_PATHS, free_port  # noqa: E402
from spread import median_range  # noqa: E402

NGINX_CONF = (
    """
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections {connections}; }}
http {{
    access_log off;"""
    + NGINX_TEMP_PATHS
    + """    server {{
        listen 127.0.0.1:{port};
        location /fast/ {{ proxy_pass http://127.0.0.1:{proxy}/endpoint/0; }}
        location /slow/ {{ proxy_pass http://127.0.0.1:{proxy}/endpoint/1; }}
    }}
}}
"""
)


def measure(args: argparse.Namespace, nginx_binary: str) -> dict:
    """One run of the walk-through; its figures."""
    from blastradius.analysis import load
    from blastradius.cluster import launch

    work = Path(tempfile.mkdtemp(prefix="blastradius-nginx-walkthrough-"))
    nginx_port, proxy_port = free_port(), free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            prefix=work, port=nginx_port, proxy=proxy_port, connections=args.connections
        )
    )
    with launch.start("dependency", ["--latency", "5*2"]) as dependency:
        nginx = subprocess.Popen([nginx_binary, "-p", str(work), "-c", str(conf)])
        try:
            scenario = {
                "name": "nginx-blast-radius",
                "load": {"rate": args.rate, "duration": f"{args.seconds}s", "timeout": "1s"},
                "generators": 1,
                "proxies": [
                    {
                        "name": "dependency",
                        "upstream": dependency.url,
                        "port": proxy_port,
                        "routes": ["/endpoint/1"],
                        "faults": [{"at": f"{args.fault_at}s", "endpoint": 0, "latency": "30s"}],
                    }
                ],
                "targets": [
                    {
                        "name": "nginx",
                        "urls": [
                            f"http://127.0.0.1:{nginx_port}/fast/",
                            f"http://127.0.0.1:{nginx_port}/slow/",
                        ],
                    }
                ],
            }
            path = work / "scenario.yaml"
            path.write_text(json.dumps(scenario))
            command = [sys.executable, "-m", "blastradius.cluster", "run", str(path)]
            result = subprocess.run(
                [*command, "--out", str(work / "runs")],
                capture_output=True,
                text=True,
            )
        finally:
            nginx.terminate()
            nginx.wait()
    if result.returncode != 0:
        sys.exit(f"the run failed ({result.returncode}): {result.stderr[-2000:]}")
    run_dir = result.stdout.strip().splitlines()[-1]
    runs = load(run_dir)
    block = runs.manifest["targets"]["nginx"]
    rows = runs.rows
    fault_ns = block["start_ns"] + int(args.fault_at * 1e9)
    settle_ns = fault_ns + 2 * 10**9  # after the first slow requests' deadline
    figures = {}
    for endpoint, name in ((0, "/fast/"), (1, "/slow/")):
        mine = rows[rows["endpoint"] == endpoint]
        before = mine[mine["intended_ns"] < fault_ns]
        after = mine[mine["intended_ns"] >= settle_ns]
        figures[name] = {
            "before": {"requests": len(before), "availability": float(before["ok"].mean())},
            "after": {
                "requests": len(after),
                "availability": float(after["ok"].mean()),
                "errors": {
                    str(k): int(v)
                    for k, v in after["error"].astype(str).value_counts().items()
                    if k
                },
            },
        }
    return {"paths": figures, "proxy": block["proxies"]["dependency"], "run_dir": run_dir}


def spread(runs: list[dict]) -> dict:
    """Each path's availability before and after the fault over the runs: the median
    (the lower middle one for an even count), lowest and highest."""
    figures: dict = {}
    for path in runs[0]["paths"]:
        for phase in ("before", "after"):
            median, low, high = median_range(
                [r["paths"][path][phase]["availability"] for r in runs]
            )
            figures.setdefault(path, {})[phase] = {"median": median, "low": low, "high": high}
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--fault-at", type=float, default=10)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: must be >= 1")

    nginx_binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx_binary).exists():
        sys.exit("nginx is needed: apt-get install nginx-light")
    runs = []
    for i in range(args.repeat):
        runs.append(measure(args, nginx_binary))
        print(f"run {i + 1} of {args.repeat}: {json.dumps(runs[-1], indent=2)}", flush=True)
    result_doc = {
        "rate": args.rate,
        "seconds": args.seconds,
        "fault_at_s": args.fault_at,
        "nginx_worker_connections": args.connections,
        "availability": spread(runs),
        "runs": runs,
    }
    print(json.dumps(result_doc["availability"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(result_doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
