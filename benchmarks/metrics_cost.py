"""Benchmark: what the live metrics cost a generator, with them against without, in one run.

    python benchmarks/metrics_cost.py [--rate 6000] [--seconds 15] [--rounds 3] [--json FILE]

Needs nginx (Debian: ``apt-get install nginx-light``).

On an embedded Ray (one CPU), a ``GeneratorActor`` pinned to core 0 sends the same
open-loop GETs to one nginx worker pinned to core 1, at a rate it keeps, with its live
metrics (``workers.metrics``: recorded per batch, exported by Ray) and without,
alternating, ``--rounds`` times each, a fresh actor each time. Each run's CPU time (user
+ system of the actor's process, every thread: the sending loop, the writer, Ray's core
worker and its metrics export) is divided by its requests. The figure is the ratio of
the medians, with metrics over without: the issue asks for at most 1.10. The CPU of a
tiny run (100 requests) of each kind, measured first, is subtracted from each run of that
kind: the actor's start-up, connections and first imports are not per request. Each
run's send-lag p99 shows both kept the rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from generator_rate import CONNECTIONS, GENERATOR_CORE, start_nginx  # noqa: E402

S = 1_000_000_000


def one_run(url: str, rate: float, seconds: float, metrics: bool) -> dict:
    """One actor, one plan: its CPU per request and its send-lag p99."""
    import numpy as np
    import psutil
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import ray

    from blastradius.workers.actor import GeneratorActor, ToStorage
    from blastradius.workers.generator import Share
    from blastradius.workers.layout import shard_dir
    from blastradius.workers.schedule import Schedule

    out = tempfile.mkdtemp(prefix="blastradius-metrics-cost-")
    actor = GeneratorActor.remote()
    ray.get(actor.ready.remote())
    pid = ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))
    os.sched_setaffinity(pid, {int(GENERATOR_CORE)})
    process = psutil.Process(pid)
    schedule = Schedule.constant_rate(rate, duration_ns=int(seconds * S))
    plan = Share(
        "bench",
        (url,),
        schedule,
        timeout_ns=S,
        connections=CONNECTIONS,
        start_ns=time.time_ns() + S // 2,
    )
    before = process.cpu_times()
    summary = ray.get(actor.run.remote(plan, ToStorage(out), metrics))
    after = process.cpu_times()
    ray.kill(actor)
    rows = pq.read_table(shard_dir(out, "bench"), columns=["intended_ns", "sent_ns", "ok"])
    lag = pc.subtract(rows["sent_ns"], rows["intended_ns"]).drop_null().to_numpy()
    cpu_s = (after.user - before.user) + (after.system - before.system)
    return {
        "metrics": metrics,
        "requests": rows.num_rows,
        "ok": summary["ok"],
        "cpu_s": round(cpu_s, 3),
        "send_lag_p99_ms": round(float(np.quantile(lag, 0.99, method="inverted_cdf")) / 1e6, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=6000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    workdir = Path(tempfile.mkdtemp(prefix="blastradius-metrics-nginx-"))
    nginx, url = start_nginx(workdir)
    ray.init(
        address="local",
        num_cpus=1,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        logging_level="ERROR",
    )
    runs = []
    try:
        fixed = {m: one_run(url, args.rate, 100 / args.rate, m)["cpu_s"] for m in (True, False)}
        print(json.dumps({"fixed_cpu_s": fixed}), flush=True)
        for round_ in range(args.rounds):
            for metrics in (True, False) if round_ % 2 == 0 else (False, True):
                run = one_run(url, args.rate, args.seconds, metrics)
                used = run["cpu_s"] - fixed[metrics]
                run["cpu_us_per_request"] = round(used / (run["requests"] - 100) * 1e6, 2)
                print(json.dumps(run), flush=True)
                runs.append(run)
    finally:
        ray.shutdown()
        nginx.terminate()
        nginx.wait()
    with_ = statistics.median(r["cpu_us_per_request"] for r in runs if r["metrics"])
    without = statistics.median(r["cpu_us_per_request"] for r in runs if not r["metrics"])
    result = {
        "rate": args.rate,
        "seconds": args.seconds,
        "rounds": args.rounds,
        "cpu_us_per_request_with_metrics": with_,
        "cpu_us_per_request_without": without,
        "ratio": round(with_ / without, 3),
        "fixed_cpu_s": fixed,
        "runs": runs,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
