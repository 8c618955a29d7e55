"""A run directory made from real requests without Ray: the reference services on
loopback, the generator's own ``run_share``, shards and a minimal run.json on disk."""

from __future__ import annotations

import json
from pathlib import Path

from blastradius.cluster import launch
from blastradius.workers.generator import Share, run_share
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.schedule import Schedule
from blastradius.workers.shards import write_shard

S = 1_000_000_000


def quarter_timing_out(run_dir: Path) -> Path:
    """200 requests (100/s for 2 s, 1 s deadline) to a launched async target over four
    dependency endpoints, one of which answers after 1.5 s: a quarter time out."""
    with (
        launch.start("dependency", ["--latency", "20*3,1500"]) as dependency,
        launch.start("async", ["--dependency", dependency.url]) as target,
    ):
        urls = tuple(f"{target.url}/call/{i}" for i in range(4))
        batches = []
        run_share(
            Share("async", urls, Schedule.constant_rate(100, duration_ns=2 * S), timeout_ns=S),
            batches.append,
        )
    run_dir.mkdir(parents=True)
    manifest = {"run_id": run_dir.name, "status": "completed"}
    (run_dir / "run.json").write_text(json.dumps(manifest))
    for n, batch in enumerate(batches):
        write_shard([batch], shard_dir(str(run_dir), "async"), shard_name(0, n))
    return run_dir
