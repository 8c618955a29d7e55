"""A generator's process is SIGKILLed mid-run: the run is partial (exit 1), the lost
generator and the window of its share that is missing are in run.json, the survivor's
rows are complete, and the totals count every row on disk."""

import json
import signal

import pandas as pd
from cli_runs import running


def test_a_killed_generator_is_lost_and_the_other_completes(tmp_path):
    document = {
        "name": "killed",
        "load": {"rate": 100, "duration": "8s", "timeout": "1s"},
        "generators": 2,
        "dependency": {"latency": "1*3"},
        "targets": [{"name": "async", "kind": "async"}],
    }
    with running(tmp_path, document) as run:
        run.shards("async", at_least=2)
        generators = run.ray_processes("ray::GeneratorActor")
        assert len(generators) == 2
        generators[0].send_signal(signal.SIGKILL)
        _, stderr, run_dir = run.end()
    assert run.process.returncode == 1, stderr
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "partial"
    states = manifest["targets"]["async"]["generators"]
    (lost,) = [g for g in states if g["state"] == "lost"]
    (survivor,) = [g for g in states if g["state"] == "completed"]
    assert lost["missing"]["from"] <= lost["lost_at"] < lost["missing"]["to"]
    rows = pd.read_parquet(run_dir / "requests")
    by_worker = rows.groupby("worker").size()
    assert by_worker[survivor["worker"]] == 400 == survivor["rows"]  # its whole share
    assert 0 < by_worker.get(lost["worker"], 0) < 400  # up to its last handed-over batch
    # The totals: the survivor's summary, and the lost generator's rows on disk.
    errors = rows.loc[~rows["ok"], "error"].astype(str).value_counts().to_dict()
    totals = {"requests": len(rows), "ok": int(rows["ok"].sum()), "errors": errors}
    assert manifest["totals"]["async"] == totals
    assert f"generator {lost['worker']} was lost" in stderr  # analyze's warning
