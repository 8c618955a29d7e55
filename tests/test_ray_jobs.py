"""``blastradius run`` submitted as a Ray job to a local head with the job server."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head() -> Iterator[str]:
    """``ray start --head --block`` on non-default ports; stopped by its pid, never ray stop."""
    dashboard = free_port()
    # Ray's Unix sockets live under --temp-dir, whose path must stay short (sun_path limit).
    temp_dir = tempfile.mkdtemp(prefix="br-ray-", dir="/tmp")
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={free_port()}",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--temp-dir={temp_dir}",
    ]
    head = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2):
                    break
            except OSError:
                assert head.poll() is None, "ray start exited"
                assert time.monotonic() < deadline, "the job server never answered"
                time.sleep(0.5)
        yield address
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait(client, job: str) -> tuple[object, str]:
    from ray.job_submission import JobStatus

    deadline = time.monotonic() + 300
    while (status := client.get_job_status(job)) not in {
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    }:
        assert time.monotonic() < deadline, client.get_job_logs(job)
        time.sleep(1)
    return status, client.get_job_logs(job)


def test_a_run_submitted_as_a_ray_job_succeeds(ray_head, wheel, tmp_path):
    """README's way: the project's wheel in the job's runtime_env, a shipped scenario by
    name. (That it works on a head with only Ray installed: .ci/check-ray-job.)"""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(ray_head)
    out = tmp_path / "runs"
    job = client.submit_job(
        entrypoint=f"blastradius run tiny --out {out}",
        runtime_env={
            "working_dir": str(wheel.parent),
            "pip": [f"${{RAY_RUNTIME_ENV_CREATE_WORKING_DIR}}/{wheel.name}"],
        },
    )
    status, logs = _wait(client, job)
    assert status == JobStatus.SUCCEEDED, logs
    run_dir = Path(logs.strip().splitlines()[-1])
    assert run_dir.parent == out
    rows = pd.read_parquet(run_dir / "requests")
    assert len(rows) == 100 and rows["ok"].all()

    relative = client.submit_job(entrypoint="blastradius run tiny --out runs")
    status, logs = _wait(client, relative)
    assert status == JobStatus.FAILED
    assert "--out runs: a relative path inside a Ray job" in logs
