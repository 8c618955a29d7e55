"""A dependency that never answers, at 1000 req/s for 60 s: do the deadlines hold, and do
the generator's in-flight count and memory stay bounded? (RELIABILITY.md)

Two set-ups, each measured in this run:
- direct: the generator against the dependency (its own 1 s deadline must end each
  request);
- through the async target with a 500 ms dependency timeout (the target's deadline
  must answer first, with an error).

Once a second: requests in flight, this process's RSS (the generator's), the target's
RSS. Prints a table; --json writes the samples.

    python benchmarks/never_answers.py [--rate 1000] [--seconds 60] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time

import psutil
import pyarrow as pa

from blastradius.cluster import launch
from blastradius.workers.generator import Generator, Share
from blastradius.workers.schedule import Schedule

S, MS = 1_000_000_000, 1_000_000


def measure(url: str, rate: float, seconds: int, target_pid: int | None) -> dict:
    batches: list[pa.RecordBatch] = []
    plan = Share("never", (url,), Schedule.constant_rate(rate, duration_ns=seconds * S), 1 * S)
    generator = Generator(plan, batches.append)
    me = psutil.Process()
    target = psutil.Process(target_pid) if target_pid else None
    base = me.memory_info().rss
    samples = []
    runner = threading.Thread(target=lambda: asyncio.run(generator.run()))
    runner.start()
    while runner.is_alive():
        runner.join(1.0)
        samples.append(
            {
                "in_flight": generator.progress()["in_flight"],
                "generator_rss_mib": (me.memory_info().rss - base) / 2**20,
                "target_rss_mib": target.memory_info().rss / 2**20 if target else None,
            }
        )
    rows = pa.Table.from_batches(batches).to_pandas()
    latency_s = rows["latency_ns"] / S
    return {
        "requests": len(rows),
        "errors": {k: int(v) for k, v in rows["error"].value_counts().items() if v},
        "latency_max_s": float(latency_s.max()),
        "latency_p50_s": float(latency_s.median()),
        "in_flight_max": max(s["in_flight"] for s in samples),
        "generator_rss_growth_max_mib": max(s["generator_rss_mib"] for s in samples),
        "target_rss_mib": [s["target_rss_mib"] for s in samples if s["target_rss_mib"]],
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--json", help="write the samples here")
    args = parser.parse_args()
    results = {}
    with launch.start("dependency", ["--latency", "3600s"]) as never:
        results["direct"] = measure(f"{never.url}/endpoint/0", args.rate, args.seconds, None)
        time.sleep(2)  # let the dependency drop the abandoned connections
        target_args = ["--dependency", never.url, "--dependency-timeout", "500ms"]
        with launch.start("async", target_args) as target:
            results["async target, 500 ms dependency timeout"] = measure(
                f"{target.url}/call/0", args.rate, args.seconds, target.process.pid
            )
    print(f"{args.rate:g} req/s for {args.seconds} s against a dependency that never answers")
    print(
        f"{'set-up':<42} {'requests':>8} {'errors':<26} {'p50 s':>6} {'max s':>6} "
        f"{'in flight max':>13} {'gen RSS +MiB':>12} {'target RSS MiB':>15}"
    )
    for name, r in results.items():
        errors = ", ".join(f"{k} {v}" for k, v in r["errors"].items())
        target = r["target_rss_mib"]
        target_text = f"{min(target):.0f}-{max(target):.0f}" if target else "-"
        print(
            f"{name:<42} {r['requests']:>8} {errors:<26} {r['latency_p50_s']:>6.3f} "
            f"{r['latency_max_s']:>6.3f} {r['in_flight_max']:>13} "
            f"{r['generator_rss_growth_max_mib']:>12.1f} {target_text:>15}"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
