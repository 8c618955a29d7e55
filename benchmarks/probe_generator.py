"""One blastradius generator run in this process; prints one JSON line of what it achieved.

Run by ``generator_rate.py`` (pinned to one core with taskset); every request is
recorded and written to Parquet shards, as in a real run. Figures are exact, from
the rows: requests, ok, send lag p99 (nearest rank), Parquet bytes, RSS over time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blastradius.workers.generator import Share, run_share
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.schedule import Schedule
from blastradius.workers.shards import write_shard
from blastradius.workers.template import RequestTemplate

S = 1_000_000_000


def json_body(size: int) -> bytes:
    """``{"data":"xxx..."}``, exactly ``size`` bytes (at least 11): Locust's POST is the same."""
    if size < 11:
        raise SystemExit("--post-json-bytes: at least 11")
    return json.dumps({"data": "x" * (size - 11)}, separators=(",", ":")).encode()


def shard_sink() -> tuple[str, str, Callable[[pa.RecordBatch], None]]:
    """A temporary run directory, its one target's shard directory, and a sink writing
    each batch there as a shard, as a run's generator does."""
    out = tempfile.mkdtemp(prefix="blastradius-bench-")
    directory = shard_dir(out, "bench")
    shards = itertools.count()

    def sink(batch: pa.RecordBatch) -> None:
        write_shard([batch], directory, shard_name(0, next(shards)))

    return out, directory, sink


def send_lag_p99_ms(rows: pa.Table) -> float | None:
    """The p99 (nearest rank) of sent - intended over the rows that were sent."""
    lag = pc.subtract(rows["sent_ns"], rows["intended_ns"]).drop_null().to_numpy()
    return float(np.quantile(lag, 0.99, method="inverted_cdf")) / 1e6 if len(lag) else None


def rss_mib() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample_rss(samples: list[tuple[float, float]], stop: threading.Event, start: float) -> None:
    while not stop.wait(1.0):
        samples.append((round(time.monotonic() - start, 1), round(rss_mib(), 1)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument(
        "--post-json-bytes", type=int, default=0, help="POST a JSON body of this size instead"
    )
    parser.add_argument(
        "--connections", type=int, default=0, help="connections opened before the start"
    )
    parser.add_argument("--http2", action="store_true", help="HTTP/2 (h2c with prior knowledge)")
    parser.add_argument("--streams", type=int, default=100, help="HTTP/2 streams a connection")
    args = parser.parse_args()

    out, directory, sink = shard_sink()

    schedule = Schedule.constant_rate(args.rate, duration_ns=int(args.seconds * S))
    request = args.url
    if args.post_json_bytes:
        request = RequestTemplate(
            args.url,
            method="POST",
            headers=(("Content-Type", "application/json"),),
            body=json_body(args.post_json_bytes),
        )
    http = {"http": "2", "streams": args.streams} if args.http2 else {}
    plan = Share(
        "bench", (request,), schedule, timeout_ns=1 * S, connections=args.connections, **http
    )
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    start = time.monotonic()
    threading.Thread(target=sample_rss, args=(samples, stop, start), daemon=True).start()
    run_share(plan, sink)
    wall = time.monotonic() - start
    stop.set()

    # Exact figures from the rows on disk, read after the run (no bookkeeping during it).
    rows = pq.read_table(directory, columns=["intended_ns", "sent_ns", "ok", "latency_ns"])
    latency = pc.filter(rows["latency_ns"], rows["ok"]).to_numpy()
    parquet_bytes = sum(p.stat().st_size for p in Path(directory).glob("*.parquet"))
    shutil.rmtree(out, ignore_errors=True)
    planned = schedule.expected_requests()
    print(
        json.dumps(
            {
                "rate": args.rate,
                "seconds": args.seconds,
                "planned": planned,
                "rows": rows.num_rows,
                "ok": int(pc.sum(rows["ok"]).as_py() or 0),
                "wall_s": round(wall, 2),
                "send_lag_p99_ms": send_lag_p99_ms(rows),
                "parquet_bytes_per_request": parquet_bytes / max(rows.num_rows, 1),
                "latency_ms": {
                    name: float(np.quantile(latency, q, method="inverted_cdf")) / 1e6
                    for name, q in (("p50", 0.5), ("p99", 0.99))
                }
                if len(latency)
                else None,
                "rss_mib": samples,
            }
        )
    )


if __name__ == "__main__":
    main()
