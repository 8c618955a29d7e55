"""Joining a Ray cluster that has token auth on (as KubeRay's ``authOptions.mode: token``
sets up): with the token the run completes; with a wrong one it is bad input."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import ray_heads as heads

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]


def test_a_run_joins_a_cluster_with_token_auth_and_a_wrong_token_is_refused(tmp_path):
    token = secrets.token_hex(16)
    out = tmp_path / "runs"
    with heads.ray_head({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}) as head:
        run = [*BLASTRADIUS, "run", "tiny", "--address", head.address, "--out", str(out)]
        joined = subprocess.run(
            run,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token},
        )
        assert joined.returncode == 0, joined.stderr[-2000:]
        run_dir = Path(joined.stdout.strip().splitlines()[-1])
        manifest = json.loads((run_dir / "run.json").read_text())
        assert manifest["status"] == "completed" and manifest["ray"]["embedded"] is False
        refused = subprocess.run(
            run,
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"},
        )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.startswith(f"blastradius run: error: --address {head.address}: ")
    assert "it refused this process's token (RAY_AUTH_MODE, RAY_AUTH_TOKEN)" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    assert len(list(out.iterdir())) == 1  # the refused run left no directory
