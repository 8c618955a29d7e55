"""Benchmark: rows per second the shard collector puts on disk, with 1, 2 and 4 generators.

    python benchmarks/collector_rate.py [--seconds 8] [--rows 5750] [--json FILE]

On an embedded Ray, K producer actors (1, 2, 4) stand in for generators: each
hands the collector one-second batches of ``--rows`` synthetic rows (built by
the generator's own ``RowBuffer``) and awaits each write before the next, as a
generator does, for ``--seconds``. The collector writes them as shards to a
temporary directory. Measured in the same run: the collector writing one
shard at a time (``writers=1``, as before) and with a writer per generator (as
the driver sizes it now).
Reported: rows on disk per second (counted from the shards written).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # sibling benchmark scripts

import pyarrow.parquet as pq  # noqa: E402
import ray  # noqa: E402
from shard_format import batch  # noqa: E402

from blastradius.workers.actor import ShardCollector  # noqa: E402


@ray.remote(num_cpus=0)
class Producer:
    """Hands the collector batches back to back, awaiting each write, for a while."""

    def __init__(self, rows: int, worker: int) -> None:
        self.table = batch(rows, seed=worker)
        self.worker = worker

    def run(self, collector, seconds: float) -> int:
        batches, end = 0, time.monotonic() + seconds
        rows = self.table.to_batches()[0]
        while time.monotonic() < end:
            ray.get(collector.put.remote("bench", self.worker, batches, rows))
            batches += 1
        return batches * self.table.num_rows


def measure(producers: int, writers: int, rows: int, seconds: float) -> float:
    """Rows per second on disk."""
    out = tempfile.mkdtemp(prefix="blastradius-collector-")
    try:
        collector = ShardCollector.remote(out, writers)
        actors = [Producer.remote(rows, w) for w in range(producers)]
        start = time.monotonic()
        sent = sum(ray.get([a.run.remote(collector, seconds) for a in actors]))
        elapsed = time.monotonic() - start
        on_disk = pq.read_table(Path(out) / "requests").num_rows
        assert on_disk == sent, (on_disk, sent)
        for actor in [*actors, collector]:
            ray.kill(actor)
        return on_disk / elapsed
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rows", type=int, default=5750)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    ray.init(
        address="local",
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}},  # producers import shard_format
    )
    results = []
    try:
        print(f"{'generators':>10} {'one at a time':>15} {'one each':>12} {'ratio':>6}")
        for producers in (1, 2, 4):
            serial = measure(producers, 1, args.rows, args.seconds)
            parallel = measure(producers, producers, args.rows, args.seconds)
            results.append(
                {
                    "generators": producers,
                    "serial_rows_per_s": serial,
                    "concurrent_rows_per_s": parallel,
                }
            )
            print(f"{producers:>10} {serial:>15,.0f} {parallel:>12,.0f} {parallel / serial:>6.2f}")
    finally:
        ray.shutdown()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
