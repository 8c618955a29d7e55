"""``blastradius run`` submitted as a Ray job to a local head with the job server."""

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import ray_heads as heads

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ray_head() -> Iterator[str]:
    with heads.ray_head() as head:
        yield head.dashboard


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
