"""Benchmark: Parquet bytes per request and write time, the shard format against pyarrow's defaults.

    python benchmarks/shard_format.py [--json FILE]

A generator closes one batch a second, so a shard holds a second of one
generator's rows. Batches shaped like a run's (constant-rate intended times,
exponential send lag and service time, one endpoint, 200s, 32 keep-alive
connections, the first byte a little before the last) are built with the
generator's own ``RowBuffer`` at several rates, then written to memory with
pyarrow's defaults (snappy, dictionary for every column: the format before)
and with ``workers.shards.WRITE_OPTIONS`` (the format now), alternating, in
the same run. Reported: bytes per row and the median write time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from blastradius.workers.record import RowBuffer
from blastradius.workers.shards import WRITE_OPTIONS

T0 = 1_790_000_000_000_000_000
NODE = "6b0f5c2f1d3e4a5b6c7d8e9f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d"  # a Ray node id's length
CONNECTIONS = 32


def batch(rate: int, seed: int = 0) -> pa.Table:
    """One second of one generator's rows at ``rate`` requests per second."""
    rng = np.random.default_rng(seed)
    buffer = RowBuffer(worker=0, node=NODE)
    step = 1_000_000_000 // rate
    lags = rng.exponential(50_000, rate).astype(np.int64)
    services = (100_000 + rng.exponential(60_000, rate)).astype(np.int64)
    receives = rng.exponential(5_000, rate).astype(np.int64)
    for i in range(rate):
        intended = T0 + i * step
        sent = intended + int(lags[i])
        # Its phases: one of 32 keep-alive connections, opened by its first request.
        connect = 80_000 + int(lags[i]) if i < CONNECTIONS else 0
        ttfb = max(int(services[i]) - int(receives[i]), 0)
        row = (i, 0, intended, sent, sent + int(services[i]) + connect, 200, 0, 3, -1)
        buffer.add(*row, i % CONNECTIONS + 1, connect, 0, ttfb)
    return pa.Table.from_batches([buffer.close()])


def measure(table: pa.Table, options: dict, repeats: int) -> tuple[float, float]:
    """Bytes per row and the median milliseconds of one write."""
    times, size = [], 0
    for _ in range(repeats):
        sink = pa.BufferOutputStream()
        start = time.perf_counter()
        pq.write_table(table, sink, **options)
        times.append(time.perf_counter() - start)
        size = sink.getvalue().size
    return size / table.num_rows, sorted(times)[len(times) // 2] * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    print(
        f"{'rows/shard':>10} {'before B/row':>13} {'now B/row':>10} {'before ms':>10} {'now ms':>8}"
    )
    for rate in (100, 1_000, 5_750, 15_000):
        table = batch(rate)
        before = measure(table, {}, args.repeats)
        now = measure(table, WRITE_OPTIONS, args.repeats)
        results.append({"rows": rate, "before": before, "now": now})
        print(f"{rate:>10,} {before[0]:>13.1f} {now[0]:>10.1f} {before[1]:>10.2f} {now[1]:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
