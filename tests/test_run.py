"""``blastradius run`` end to end on the embedded local Ray, through the real CLI."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
import yaml
from cli_runs import running

from blastradius.workers.run_record import FORMAT

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]  # the CLI, as installed

S = 1_000_000_000

SCENARIO = {
    "name": "e2e",
    "load": {"rate": 100, "duration": "3s", "timeout": "1s"},
    "generators": 2,
    "dependency": {"latency": "10*3"},
    "targets": [{"name": "async", "kind": "async"}],
}


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*BLASTRADIUS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def listening(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((parts.hostname, parts.port)) == 0


def test_a_run_writes_the_planned_rows_and_a_complete_manifest(tmp_path):
    scenario = tmp_path / "e2e.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = str(tmp_path / "runs")
    result = run_cli("run", str(scenario), "--out", out, "--metrics-port", str(port))
    assert result.returncode == 0, result.stderr
    # The embedded cluster's Prometheus endpoint, where it was asked to be, said first.
    assert result.stdout.splitlines()[0] == f"metrics: http://127.0.0.1:{port}/metrics"
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("e2e-")

    rows = pd.read_parquet(run_dir / "requests")
    assert len(rows) == 300 and rows["ok"].all()
    assert sorted(rows["seq"] * 2 + rows["worker"]) == list(range(300))
    assert set(rows["endpoint"]) == {0, 1, 2}
    # Progress lines (plain lines off a terminal): the count sent never goes backwards,
    # also when one generator has ended before the other.
    sent = [int(m.group(1)) for m in re.finditer(r"^async: .* sent +(\d+) ", result.stdout, re.M)]
    assert sent and sent == sorted(sent) and sent[-1] <= 300

    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["format"] == FORMAT
    assert manifest["status"] == "completed" and manifest["ended"]
    assert manifest["scenario"] == SCENARIO
    assert set(manifest["versions"]) >= {"blastradius", "ray", "python"}
    target = manifest["targets"]["async"]
    assert [g["state"] for g in target["generators"]] == ["completed", "completed"]
    assert {g["node"] for g in target["generators"]} == set(rows["node"])
    assert sum(g["rows"] for g in target["generators"]) == 300
    assert manifest["totals"]["async"] == {"requests": 300, "ok": 300, "errors": {}}
    # Every service the run launched is gone.
    urls = target["urls"]
    assert urls and not any(listening(url) for url in urls)
    # The closing table comes from the analysis package.
    table = [line.split() for line in result.stdout.splitlines() if line.startswith("async ")]
    assert table and table[-1][:4] == ["async", "300", "300", "1.0000"]


def test_unwritable_output_is_exit_2_with_no_run_left(tmp_path):
    scenario = tmp_path / "e2e.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli("run", str(scenario), "--out", str(blocker / "runs"))
    assert result.returncode == 2
    assert result.stderr.strip().startswith("blastradius run: error: --out ")
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_more_generators_than_the_embedded_cluster_has_cores_is_exit_2(tmp_path):
    scenario = tmp_path / "e2e.yaml"
    scenario.write_text(yaml.safe_dump({**SCENARIO, "generators": 99}))
    result = run_cli("run", str(scenario), "--out", str(tmp_path / "runs"))
    assert result.returncode == 2, result.stderr
    cores = os.cpu_count()
    assert result.stderr == (
        "blastradius run: error: generators: 99 need a CPU each; the embedded cluster "
        f"(this machine's cores) has {cores} free\n"
    )
    assert not (tmp_path / "runs").exists()


def test_a_service_that_cannot_start_fails_the_run_saying_why(tmp_path):
    """A broken installation on the services' side (gunicorn unimportable, which only the
    blocking target needs): the run is `failed`, exit 1, and run.json names the service
    and its last words."""
    broken = tmp_path / "broken"
    (broken / "gunicorn").mkdir(parents=True)
    (broken / "gunicorn" / "__init__.py").write_text("raise ImportError('gunicorn is broken')\n")
    document = {**SCENARIO, "targets": [{"name": "sync", "kind": "blocking", "threads": 4}]}
    scenario = tmp_path / "e2e.yaml"
    scenario.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [*BLASTRADIUS, "run", str(scenario), "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(broken)},
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "failed" and manifest["ended"]
    assert manifest["error"].startswith("blocking service did not start: ")
    assert "gunicorn is broken" in manifest["error"]
    assert f"run failed: see {run_dir}/run.json" in result.stderr


def test_a_driver_killed_outright_leaves_rows_that_analyze_reads_as_an_incomplete_run(
    tmp_path, slow_dependency
):
    """SIGKILL: nothing of the driver runs after it. What the collector wrote is there;
    run.json still says running, and analyze says the run is incomplete."""
    document = {
        "name": "killed",
        "load": {"rate": 100, "duration": "60s", "timeout": "1s"},
        "generators": 1,
        "targets": [{"name": "dep", "url": f"{slow_dependency.url}/endpoint/2"}],  # 500s
    }
    with running(tmp_path, document) as run:
        run.shards("dep", at_least=2)
        run.kill_outright()  # the driver and the Ray it started
        run.end(60)
    out = run.out
    (run_dir,) = out.iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    result = run_cli("analyze", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert f"warning: run {run_dir.name} is incomplete: its driver never finished it" in (
        result.stderr
    )
    rows = pd.read_parquet(run_dir / "requests")
    assert len(rows) >= 2 and set(rows["status"]) == {500}
    assert re.search(rf"^dep\s+{len(rows)}\s", result.stdout, re.M), result.stdout


def test_an_unreachable_ray_address_is_exit_2(tmp_path):
    scenario = tmp_path / "e2e.yaml"
    scenario.write_text(yaml.safe_dump(SCENARIO))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "runs"
    result = run_cli(
        "run", str(scenario), "--out", str(out), "--address", f"127.0.0.1:{port}", timeout=200
    )
    assert result.returncode == 2, result.stderr
    assert f"--address 127.0.0.1:{port}: cannot join a Ray cluster" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_generators_flushes_and_marks_the_run_interrupted(tmp_path, stop):
    """Ctrl-C (SIGINT to the terminal's process group), or SIGTERM to the driver alone (a
    pod deleted, ``ray job stop``, ``timeout``): the same orderly stop, never "completed"."""
    document = {**SCENARIO, "load": {"rate": 100, "duration": "60s", "timeout": "1s"}}
    with running(tmp_path, document) as run:
        run.line("async:")
        if stop == "ctrl-c":
            run.signal_group(signal.SIGINT)  # as a terminal's Ctrl-C does
        else:
            run.process.send_signal(signal.SIGTERM)  # as Kubernetes does to PID 1
        _, stderr, run_dir = run.end(90)
    assert run.process.returncode == 130, stderr
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["ended"]
    generators = manifest["targets"]["async"]["generators"]
    assert [g["state"] for g in generators] == ["stopped", "stopped"]
    rows = pd.read_parquet(run_dir / "requests")
    assert 0 < len(rows) < 6000
    assert len(rows) == sum(g["rows"] for g in generators)
    assert not any(listening(url) for url in manifest["targets"]["async"]["urls"])


def test_a_second_signal_stops_at_once_instead_of_waiting_for_requests_in_flight(tmp_path):
    """Requests in flight to a 30 s dependency would hold an orderly stop for up to their
    20 s deadline; a second Ctrl-C cuts it short, and the run is still `interrupted`."""
    document = {
        "name": "impatient",
        "load": {"rate": 20, "duration": "60s", "timeout": "20s"},
        "generators": 1,
        "dependency": {"latency": "30s"},
        "targets": [{"name": "async", "kind": "async", "dependency_timeout": "25s"}],
    }
    with running(tmp_path, document) as run:
        run.line("async:")
        run.signal_group(signal.SIGINT)
        run.line("interrupted; stopping the generators")
        second = time.monotonic()
        run.signal_group(signal.SIGINT)
        _, stderr, run_dir = run.end(90)
        took = time.monotonic() - second
    assert run.process.returncode == 130, stderr
    assert took < 15, f"{took:.1f} s after the second signal"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"


def test_load_one_url_from_flags_keeps_its_secret_out_of_everything_written(tmp_path):
    """``blastradius load`` against uvicorn: the header's secret arrives, and appears in
    neither run.json, the output, nor the report."""
    from real_servers import uvicorn_echo

    secret = "s3cret-" + os.urandom(6).hex()
    log = tmp_path / "echo.jsonl"
    with uvicorn_echo(log) as url:
        args = ["load", f"{url}/orders", "--rate", "50", "--requests", "20", "-X", "POST"]
        args += ["--json", '{"n": 1}', "--generators", "1", "--out", str(tmp_path / "runs")]
        args += ["-H", "Authorization: Bearer ${BR_TEST_SECRET}"]
        result = subprocess.run(
            [*BLASTRADIUS, *args],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "BR_TEST_SECRET": secret},
        )
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    rows = pd.read_parquet(run_dir / "requests")
    assert len(rows) == 20 and rows["ok"].all()
    seen = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(seen) == 20 and {r["method"] for r in seen} == {"POST"}
    assert all(dict(r["headers"])["authorization"] == f"Bearer {secret}" for r in seen)

    report = run_cli("report", str(run_dir))
    assert report.returncode == 0, report.stderr
    manifest = (run_dir / "run.json").read_text()
    assert json.loads(manifest)["targets"]["load"]["requests"][0]["method"] == "POST"
    for text in (manifest, result.stdout, result.stderr, Path(report.stdout.strip()).read_text()):
        assert secret not in text
