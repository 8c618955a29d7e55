"""The output filesystem fills up mid-run: a 32 KiB tmpfs as --out."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]


@pytest.fixture
def small_filesystem(tmp_path: Path):
    mountpoint = tmp_path / "full"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip() or 'not permitted'}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=False)


def test_a_full_output_fails_the_run_saying_why_and_keeps_the_shards_before_it(
    small_filesystem, tmp_path
):
    document = {
        "name": "fill",
        "load": {"rate": 200, "duration": "60s", "timeout": "1s"},
        "generators": 1,
        "dependency": {"latency": "1*3"},
        "targets": [{"name": "async", "kind": "async"}, {"name": "never", "kind": "async"}],
    }
    scenario = tmp_path / "fill.yaml"
    scenario.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [*BLASTRADIUS, "run", str(scenario), "--out", str(small_filesystem)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "No space left on device" in result.stdout  # the driver's error line
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("async: generator 0 failed: OSError")
    assert "No space left on device" in manifest["error"]
    (generator,) = manifest["targets"]["async"]["generators"]
    assert generator["state"] == "failed" and generator["missing"]["from"]
    assert "never" not in manifest["targets"]  # the run stopped at the failure
    rows = pd.read_parquet(run_dir / "requests")  # every published shard reads
    assert 0 < len(rows) < 12_000
    assert manifest["totals"]["async"]["requests"] == len(rows)


def test_on_a_full_disk_run_json_is_still_rewritten_in_its_own_space(small_filesystem):
    from blastradius.cluster.manifest import Manifest, read_manifest
    from blastradius.workers.run_record import RunRecord, RunStatus

    run_dir = str(small_filesystem / "run")
    (small_filesystem / "run").mkdir()
    manifest = Manifest(run_dir, RunRecord("run", scenario={"name": "x"}))
    manifest.write()
    with open(small_filesystem / "filler", "wb", buffering=0) as filler:
        try:
            while True:
                filler.write(b"\0" * 1024)
        except OSError:
            pass  # full
    manifest.update(error="the output filled up")
    manifest.finish(RunStatus.FAILED)
    written = read_manifest(run_dir)
    assert written["status"] == "failed" and written["error"] == "the output filled up"
