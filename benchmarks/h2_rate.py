"""Benchmark: the HTTP/2 client on one core, beside h2load on the same nginx, in one run.

    python benchmarks/h2_rate.py [--seconds 10] [--connections 8] [--json FILE]

nginx (one worker on core 1, Debian's, with ``http_v2``) answers ``200 ok`` over
HTTP/1.1 on one port and h2c on another. On core 0, for HTTP/2 with 1, 10 and 100
streams per connection over ``--connections`` connections:

1. the highest open-loop rate the generator (``probe_generator.py --http2``) keeps
   with send-lag p99 under 10 ms and 99% of its requests ok: doubled from 500/s
   until it fails, then halved between the last rate kept and the first lost
   until they are within 10%;
2. h2load (Debian's ``nghttp2-client``, ``-c C -m S``, closed loop as fast as it
   goes) for as long: its requests/s;
3. CPU per request (user + system of the probe process, less that of a tiny run of
   the same command for start-up) at ``--cpu-rate`` req/s for ``--seconds``, over
   HTTP/2 and over HTTP/1.1 with the same connections: the ratio is what HTTP/2 costs
   the client beside HTTP/1.1 (the aim: at most 1.5).

h2load is closed loop and written in C on nghttp2: its figure is the most a client
gets out of this nginx on a core, the ceiling the generator's open-loop rate is set
beside. Both run pinned to the same core, one after the other.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generator_rate import (  # noqa: E402
    GENERATOR_CORE,
    LAG_LIMIT_MS,
    NGINX_CONF,
    OK_LOCATION,
    free_port,
    keeps_up,
)

STREAMS = (1, 10, 100)


def start_nginx(workdir: Path) -> tuple[subprocess.Popen, str, str]:
    """nginx on core 1: its HTTP/1.1 URL and its h2c URL."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        sys.exit("nginx is needed: apt-get install nginx-light")
    h1, h2 = free_port(), free_port()
    # generator_rate's nginx (one worker on core 1), with a second server speaking h2c.
    text = NGINX_CONF.format(prefix=workdir, port=h1, mask="10", locations=OK_LOCATION)
    h2c = f"    server {{\n        listen 127.0.0.1:{h2} http2;\n{OK_LOCATION}\n    }}\n"
    conf = workdir / "nginx.conf"
    conf.write_text(text.replace("    server {", h2c + "    server {", 1))
    process = subprocess.Popen([nginx, "-p", str(workdir), "-c", str(conf)])
    time.sleep(0.5)
    if process.poll() is not None:
        sys.exit("nginx did not start; see " + str(workdir / "error.log"))
    return process, f"http://127.0.0.1:{h1}/", f"http://127.0.0.1:{h2}/"


def probe(url: str, rate: float, seconds: float, connections: int, streams: int | None) -> dict:
    """One run of the generator pinned to core 0 (``streams`` None: HTTP/1.1); what it
    printed, with the CPU seconds it used."""
    command = ["taskset", "-c", GENERATOR_CORE, sys.executable, str(HERE / "probe_generator.py")]
    command += ["--url", url, "--rate", str(rate), "--seconds", str(seconds)]
    command += ["--connections", str(connections)]
    if streams is not None:
        command += ["--http2", "--streams", str(streams)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = json.loads(result.stdout.strip().splitlines()[-1])
    run["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return run


def highest_rate(url: str, seconds: float, connections: int, streams: int) -> tuple[float, list]:
    """The highest rate kept (send-lag p99 < 10 ms, 99% ok), and every probe's figures."""
    kept, lost, rate, tried = 0.0, None, 500.0, []
    while lost is None or (lost - kept) / lost > 0.1:
        run = probe(url, rate, seconds, connections, streams)
        ok = keeps_up(run)
        tried.append({"rate": rate, "kept": ok, "send_lag_p99_ms": run["send_lag_p99_ms"]})
        print(
            f"  {streams:>3} streams {rate:>8.0f}/s: lag p99 {run['send_lag_p99_ms']} ms, "
            f"ok {run['ok']}/{run['planned']} -> {'kept' if ok else 'lost'}",
            flush=True,
        )
        if ok:
            kept = rate
            rate = rate * 2 if lost is None else (rate + lost) / 2
        else:
            lost = rate
            rate = (kept + lost) / 2
        if kept == 0 and lost is not None and lost <= 500:
            break
    return kept, tried


def h2load(url: str, seconds: float, connections: int, streams: int) -> float:
    """h2load's requests/s, pinned to core 0, for ``seconds``."""
    binary = shutil.which("h2load")
    if binary is None:
        sys.exit("h2load is needed: apt-get install nghttp2-client")
    command = ["taskset", "-c", GENERATOR_CORE, binary, "-c", str(connections)]
    command += ["-m", str(streams), "-D", str(int(seconds)), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    match = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    succeeded = re.search(r"(\d+) succeeded, (\d+) failed", out)
    if match is None or succeeded is None or int(succeeded.group(2)):
        sys.exit("h2load said:\n" + out)
    return float(match.group(1))


def cpu_per_request_us(url: str, rate: float, seconds: float, connections: int, streams) -> float:
    start_up = probe(url, 10, 0.1, connections, streams)["cpu_s"]
    run = probe(url, rate, seconds, connections, streams)
    return (run["cpu_s"] - start_up) / run["rows"] * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--cpu-rate", type=float, default=2000)
    parser.add_argument("--rounds", type=int, default=3, help="CPU runs of each, median kept")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="blastradius-h2-"))
    nginx, h1_url, h2_url = start_nginx(workdir)
    figures: dict = {"connections": args.connections, "seconds": args.seconds, "streams": {}}
    try:
        for streams in STREAMS:
            rate, tried = highest_rate(h2_url, args.seconds, args.connections, streams)
            peer = h2load(h2_url, args.seconds, args.connections, streams)
            figures["streams"][str(streams)] = {
                "generator_rps": rate,
                "h2load_rps": peer,
                "ratio": rate / peer,
                "tried": tried,
            }
            print(
                f"{streams:>3} streams: generator {rate:.0f}/s (lag p99 < {LAG_LIMIT_MS} ms), "
                f"h2load {peer:.0f}/s, ratio {rate / peer:.3f}",
                flush=True,
            )
        cpu: dict[str, list[float]] = {"http/1.1": [], "http/2 (10 streams)": []}
        for _ in range(args.rounds):
            for name, url, streams in (
                ("http/1.1", h1_url, None),
                ("http/2 (10 streams)", h2_url, 10),
            ):
                cost = cpu_per_request_us(
                    url, args.cpu_rate, args.seconds, args.connections, streams
                )
                cpu[name].append(cost)
                print(f"{args.cpu_rate:.0f}/s {name}: {cost:.1f} us CPU per request", flush=True)
        medians = {name: sorted(v)[len(v) // 2] for name, v in cpu.items()}
        ratio = medians["http/2 (10 streams)"] / medians["http/1.1"]
        figures["cpu_us_per_request"] = {
            "rate": args.cpu_rate,
            "runs": cpu,
            "median": medians,
            "ratio_http2_to_http1": ratio,
        }
        print(
            f"CPU per request: HTTP/2 {medians['http/2 (10 streams)']:.1f} us, "
            f"HTTP/1.1 {medians['http/1.1']:.1f} us, ratio {ratio:.2f} (aim <= 1.5)"
        )
    finally:
        nginx.terminate()
        nginx.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
