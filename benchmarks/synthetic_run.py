"""Write a synthetic run in the project's own format, for the analysis benchmarks.

    python benchmarks/synthetic_run.py OUT_DIR [--rows 30000000] [--targets 2]
        [--seconds 3600] [--shard-rows 1000000] [--seed 7] [--slow-from F]

A run directory (``run.json``, ``requests/target=NAME/part-*.parquet``) as a run of
``--targets`` targets over ``--seconds`` of load would leave it: the rows of each target
spread over four generators, written in shards of ``--shard-rows`` with the project's
writer (``workers.shards.write_shard``: its encodings and compression). Per row: a
log-normal service time (median 50 ms), a send lag under 2 ms, 10% failing (timeouts,
resets and HTTP errors), status 200 for the others. Seeded, so anyone gets the same run.
``--slow-from F``: from that fraction of each target's time on, a fault: the service
time is five times as long (a run whose percentiles a sample of its shards mistakes).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow as pa

from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.record import ERROR_KINDS, SCHEMA
from blastradius.workers.shards import write_shard

S = 1_000_000_000
T0 = 1_790_000_000_000_000_000
GENERATORS = 4
FAILURES = ("timeout", "reset", "http")


def shard(
    rng: np.random.Generator,
    worker: int,
    first_seq: int,
    n: int,
    span_ns: int,
    start_ns: int,
    slow: bool = False,
) -> pa.RecordBatch:
    """``n`` rows of one generator, intended times in ``[start_ns, start_ns + span_ns)``
    (``slow``: five times the service time)."""
    intended = start_ns + np.sort(rng.integers(0, span_ns, n))
    lag = rng.integers(20_000, 2_000_000, n)
    service = rng.lognormal(np.log(250e6 if slow else 50e6), 1.0, n).astype(np.int64)
    failed = rng.random(n) < 0.1
    codes = np.array([ERROR_KINDS.index(k) for k in FAILURES], np.int32)
    error = np.where(failed, codes[rng.integers(0, len(FAILURES), n)], 0).astype(np.int32)
    sent = intended + lag
    done = sent + service
    arrays = [
        pa.array(np.full(n, worker, np.int32)),
        pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["node-0"])),
        pa.array(np.arange(first_seq, first_seq + n, dtype=np.int64)),
        pa.array(np.zeros(n, np.int32)),
        pa.array(intended),
        pa.array(sent),
        pa.array(done),
        pa.array(done - intended),
        pa.array(service),
        pa.array(np.where(failed, 0, 200).astype(np.int16)),
        pa.DictionaryArray.from_arrays(pa.array(error), pa.array(ERROR_KINDS)),
        pa.array(~failed),
        pa.array(np.full(n, 512, np.int64)),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


def write_run(
    out: Path,
    rows: int,
    targets: int,
    seconds: float,
    shard_rows: int,
    seed: int,
    slow_from: float = 1.0,
) -> None:
    """The run at ``out`` (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    names = [f"target-{i}" for i in range(targets)]
    out.mkdir(parents=True, exist_ok=False)
    manifest = {
        "format": 1,
        "run_id": out.name,
        "status": "completed",
        "scenario": {"name": "synthetic"},
    }
    (out / "run.json").write_text(json.dumps(manifest))
    span = int(seconds * S)
    per_target = rows // targets
    for t, name in enumerate(names):
        start = T0 + t * span  # targets run one after another
        shards = max(1, -(-per_target // shard_rows))
        for k in range(shards):
            n = min(shard_rows, per_target - k * shard_rows)
            worker = k % GENERATORS
            window = span // shards
            slow = k >= slow_from * shards
            batch = shard(rng, worker, k * shard_rows, n, window, start + k * window, slow)
            write_shard([batch], shard_dir(str(out), name), shard_name(worker, k))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=30_000_000)
    parser.add_argument("--targets", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=3600)
    parser.add_argument("--shard-rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--slow-from", type=float, default=1.0)
    args = parser.parse_args()
    write_run(
        args.out, args.rows, args.targets, args.seconds, args.shard_rows, args.seed, args.slow_from
    )
    print(args.out)


if __name__ == "__main__":
    main()
