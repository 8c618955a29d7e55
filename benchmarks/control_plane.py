"""Benchmark: the control plane with 1 to 32 generators, simulated on one machine.

    python benchmarks/control_plane.py [--generators 1 2 4 8 16 32] [--rows 10000]
        [--seconds 15] [--json FILE]

What a run's driver and shard collector do per generator, without the load: light
actors stand in for generators, each handing the collector (``workers.actor.
ShardCollector``, a writer per generator, as the driver makes it) a batch of ``--rows``
synthetic rows every second (a generator at that many requests a second) and awaiting
its write, as a generator does, and answering ``progress()``. The driver's loop is the
run's: once a second a ``progress()`` call to every generator, a wait of at most half a
second, the totals and the progress line (``cluster.watch``).

Per number of generators, in one run on the embedded cluster:

- the driver's CPU (user + system of this process, over the steady seconds) per
  generator per second;
- the rows a second the collector put on disk, against those offered, and the longest
  a generator waited for one write (a write that takes over a second holds that
  generator's next batch: its buffer grows, its rows reach disk late).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray

from blastradius.cluster.joining import connect
from blastradius.cluster.watch import progress_line
from blastradius.workers.actor import ShardCollector, ToCollector
from blastradius.workers.messages import Counts, Progress, Window
from blastradius.workers.record import RowBuffer


def synthetic_batch(worker: int, rows: int) -> pa.RecordBatch:
    """``rows`` ok requests of one generator, a second's worth, as the writer would."""
    buffer = RowBuffer(worker=worker, node="sim")
    start = time.time_ns()
    rng = np.random.default_rng(worker)
    latency = rng.lognormal(np.log(2e6), 0.5, rows).astype(np.int64)
    for i in range(rows):
        intended = start + i * (1_000_000_000 // rows)
        sent = intended + 200_000
        buffer.add(i, 0, intended, sent, int(sent + latency[i]), 200, 0, 512)
    batch = buffer.close()
    assert batch is not None
    return batch


@ray.remote(num_cpus=0)
class Feeder:
    """A generator's traffic to the control plane, without its load."""

    def __init__(self, worker: int, rows: int, output: ToCollector) -> None:
        self.worker, self.rows = worker, rows
        self.batch = synthetic_batch(worker, rows)
        self.sink = output.sink("sim", worker)
        self.handed = 0
        self.longest_write_s = 0.0
        self.started = time.monotonic()

    async def run(self, seconds: float) -> dict:
        """Hand a batch every second for ``seconds``, awaiting each write."""
        self.started = time.monotonic()
        due = self.started
        while time.monotonic() < self.started + seconds:
            due += 1.0
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            began = time.monotonic()
            await self.sink(self.batch)
            self.longest_write_s = max(self.longest_write_s, time.monotonic() - began)
            self.handed += self.batch.num_rows
        return {"rows": self.handed, "longest_write_s": self.longest_write_s}

    async def progress(self) -> Progress:
        """Counters as a generator reports them."""
        return Progress(
            rows=self.handed,
            sent=self.handed,
            ok=self.handed,
            errors={},
            worker=self.worker,
            target="sim",
            node="sim",
            elapsed_s=time.monotonic() - self.started,
            in_flight=0,
            waiting=0,
            window=Window(self.rows, self.rows, 2.0),
        )


def cpu_s() -> float:
    """User + system CPU of this process so far."""
    times = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(times[11]) + int(times[12])) / 100


def one(generators: int, rows: int, seconds: float, workdir: Path) -> dict:
    """A simulated run of ``generators``; the figures of its steady seconds."""
    run_dir = workdir / f"run-{generators}"
    collector = ShardCollector.remote(str(run_dir), writers=generators)
    output = ToCollector(collector)
    feeders = [Feeder.remote(w, rows, output) for w in range(generators)]
    ray.get([f.progress.remote() for f in feeders])  # all created and answering
    refs = [f.run.remote(seconds) for f in feeders]
    start = time.monotonic()
    cpu_before, cpu_at = cpu_s(), None
    lines = 0
    pending = list(refs)
    while pending:
        _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        calls = [f.progress.remote() for f in feeders]
        ready, _ = ray.wait(calls, num_returns=len(calls), timeout=0.5)
        reports = [ray.get(r) for r in ready]
        total = Counts.total(reports)
        elapsed = time.monotonic() - start
        progress_line("sim", total, elapsed, reports, total.sent / max(elapsed, 1e-9), (1, 1))
        lines += 1
        if cpu_at is None and elapsed >= 2.0:  # past the start-up
            cpu_before, cpu_at = cpu_s(), time.monotonic()
    steady = time.monotonic() - (cpu_at or start)
    driver_cpu = cpu_s() - cpu_before
    results = ray.get(refs)
    wall = time.monotonic() - start
    written = sum(r["rows"] for r in results)
    ray.kill(collector)
    for feeder in feeders:
        ray.kill(feeder)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {
        "generators": generators,
        "offered_rows_per_s": generators * rows,
        "written_rows_per_s": written / wall,
        "longest_write_s": max(r["longest_write_s"] for r in results),
        "driver_cpu_ms_per_generator_s": 1000 * driver_cpu / steady / generators,
        "driver_cpu_percent": 100 * driver_cpu / steady,
        "progress_rounds": lines,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generators", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--rows", type=int, default=10_000, help="rows a generator hands a second")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    connect(None)
    workdir = Path(tempfile.mkdtemp(prefix="blastradius-control-plane-"))
    found = []
    try:
        for n in args.generators:
            result = one(n, args.rows, args.seconds, workdir)
            found.append(result)
            print(
                f"{n:3d} generators: offered {result['offered_rows_per_s']:9,.0f} rows/s, "
                f"written {result['written_rows_per_s']:9,.0f} rows/s, longest write "
                f"{result['longest_write_s']:.2f} s; driver "
                f"{result['driver_cpu_ms_per_generator_s']:.2f} ms CPU per generator-second "
                f"({result['driver_cpu_percent']:.1f}% of a core)",
                flush=True,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        ray.shutdown()
    if args.json:
        args.json.write_text(json.dumps({"rows_per_generator": args.rows, "runs": found}, indent=2))


if __name__ == "__main__":
    main()
