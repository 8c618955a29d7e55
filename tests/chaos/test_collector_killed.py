"""The shard collector (the actor writing every generator's batches) is SIGKILLed
mid-run: what it wrote stays readable, and the run fails saying what it lost."""

import json
import signal

import pandas as pd
from cli_runs import running


def test_a_killed_collector_fails_the_run_and_keeps_what_it_wrote(tmp_path):
    document = {
        "name": "collector",
        "load": {"rate": 100, "duration": "60s", "timeout": "1s"},
        "generators": 2,
        "dependency": {"latency": "1*3"},
        "targets": [{"name": "async", "kind": "async"}],
    }
    with running(tmp_path, document) as run:
        run.shards("async", at_least=2)
        (collector,) = run.ray_processes("ray::ShardCollector")
        collector.send_signal(signal.SIGKILL)
        _, stderr, run_dir = run.end()
    assert run.process.returncode == 1, stderr
    assert "Traceback" not in stderr
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("async: generator ")
    assert "ActorDiedError" in manifest["error"] or "RayActorError" in manifest["error"]
    generators = manifest["targets"]["async"]["generators"]
    assert {g["state"] for g in generators} == {"failed"}
    assert all(g["missing"]["from"] < g["missing"]["to"] for g in generators)
    rows = pd.read_parquet(run_dir / "requests")  # what it published reads whole
    assert 0 < len(rows) < 6000 and rows["ok"].all()
    assert manifest["totals"]["async"]["requests"] == len(rows)
