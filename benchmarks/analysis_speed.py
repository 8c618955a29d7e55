"""Benchmark: summary + 1 s timeline over 10 million rows, beside plain pandas.

    python benchmarks/analysis_speed.py [--rows 10000000] [--shuffle] [--json FILE]

Each approach runs in a process of its own, pinned to one core (taskset), on the
same synthetic rows (seeded): two targets, 1000 s of intended times, 10% of
requests failing, log-normal latencies. Timed: the analysis call only. Memory:
tracemalloc's peak during a second, traced call (numpy and pandas allocations
are traced), beside the size of the columns it needs.

- blastradius: ``analysis.summary(rows)`` and ``analysis.timeline(rows, 1 s)``;
``--shuffle`` puts the rows in a random order first (a run's rows come in time
order per generator; this shows the figures do not depend on it).

- pandas: the straightforward groupby version, ``groupby().quantile()`` for
  the percentiles, counts and sums by groupby.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

S = 1_000_000_000
T0 = 1_790_000_000_000_000_000
NEEDED = ["target", "worker", "intended_ns", "sent_ns", "latency_ns", "service_ns", "ok", "error"]


def synthetic_rows(n: int) -> pd.DataFrame:
    """``n`` rows shaped like a run's: two targets, 10% failures, log-normal latency."""
    rng = np.random.default_rng(7)
    intended = T0 + np.sort(rng.integers(0, 1000 * S, n))
    lag = rng.integers(0, 2_000_000, n)
    service = rng.lognormal(np.log(50e6), 1.0, n).astype(np.int64)
    ok = rng.random(n) > 0.1
    error = np.where(ok, "", "timeout")
    sent = intended + lag
    return pd.DataFrame(
        {
            "target": pd.Categorical(np.where(rng.random(n) < 0.5, "sync", "async")),
            "worker": rng.integers(0, 4, n).astype(np.int32),
            "intended_ns": intended,
            "sent_ns": pd.array(sent, dtype="Int64"),
            "latency_ns": pd.array(lag + service, dtype="Int64"),
            "service_ns": pd.array(service, dtype="Int64"),
            "ok": ok,
            "error": pd.Categorical(error),
        }
    )


def ours(rows: pd.DataFrame) -> object:
    from blastradius.analysis import summary, timeline

    return summary(rows), timeline(rows, S)


def plain_pandas(rows: pd.DataFrame) -> object:
    qs = [0.5, 0.9, 0.99, 0.999, 0.9999]
    ok = rows[rows["ok"]]
    by_target = rows.groupby("target", observed=True)
    counts = by_target.agg(requests=("ok", "size"), ok=("ok", "sum"))
    latency = ok.groupby("target", observed=True)["latency_ns"].quantile(qs)
    service = ok.groupby("target", observed=True)["service_ns"].quantile(0.99)
    lag = (
        (rows["sent_ns"] - rows["intended_ns"])
        .groupby([rows["target"], rows["worker"]], observed=True)
        .quantile(0.99)
    )
    errors = rows.groupby(["target", "error"], observed=True).size()
    window = (
        rows["intended_ns"] - rows.groupby("target", observed=True)["intended_ns"].transform("min")
    ) // S
    frame = rows.assign(window=window)
    line = frame.groupby(["target", "window"], observed=True).agg(
        scheduled=("ok", "size"), ok=("ok", "sum")
    )
    line_q = (
        frame[frame["ok"]]
        .groupby(["target", "window"], observed=True)["latency_ns"]
        .quantile([0.5, 0.9, 0.99])
        .unstack()
    )
    return counts, latency, service, lag, errors, line.join(line_q)


def measure(which: str, n: int, shuffle: bool = False) -> dict:
    rows = synthetic_rows(n)
    if shuffle:
        order = np.random.default_rng(1).permutation(n)
        rows = rows.iloc[order].reset_index(drop=True)
    columns_mib = rows[NEEDED].memory_usage(deep=True).sum() / 2**20
    run = {"ours": ours, "pandas": plain_pandas}[which]
    start = time.perf_counter()
    run(rows)
    seconds = time.perf_counter() - start
    # Memory in a second pass: tracing every allocation would slow the timed one.
    tracemalloc.start()
    run(rows)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "which": which,
        "rows": n,
        "seconds": round(seconds, 3),
        "peak_mib": round(peak / 2**20, 1),
        "columns_mib": round(columns_mib, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--shuffle", action="store_true", help="rows in a random order")
    parser.add_argument("--one", choices=["ours", "pandas"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.rows, args.shuffle)))
        return
    results = {}
    for which in ("ours", "pandas"):
        command = [
            "taskset",
            "-c",
            "0",
            sys.executable,
            __file__,
            "--one",
            which,
            "--rows",
            str(args.rows),
            *(["--shuffle"] if args.shuffle else []),
        ]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        results[which] = json.loads(output.strip().splitlines()[-1])
        r = results[which]
        print(
            f"{which:<7} {r['seconds']:8.2f} s   peak {r['peak_mib']:7.0f} MiB   "
            f"(columns it reads: {r['columns_mib']:.0f} MiB)",
            flush=True,
        )
    ratio = results["pandas"]["seconds"] / results["ours"]["seconds"]
    results["speedup"] = round(ratio, 2)
    results["ours_peak_over_columns"] = round(
        results["ours"]["peak_mib"] / results["ours"]["columns_mib"], 2
    )
    print(
        f"speed-up over plain pandas: {ratio:.1f}x; our peak memory is "
        f"{results['ours_peak_over_columns']:.1f}x the columns it reads"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
