"""A Ray head started by a test: ``ray start --head --block`` on free, non-default ports,
with the job server, stopped by its pid (never ``ray stop``)."""

from __future__ import annotations

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
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Head:
    """A running head: its GCS address (``--address``) and job server URL."""

    address: str
    dashboard: str


@contextlib.contextmanager
def ray_head(env: dict[str, str] | None = None) -> Iterator[Head]:
    """A head with ``env`` over this process's environment (``RAY_AUTH_MODE`` defaults to
    ``disabled``), ready when its job server answers."""
    dashboard, gcs = free_port(), free_port()
    # Ray's Unix sockets live under --temp-dir, whose path must stay short (sun_path limit).
    temp_dir = tempfile.mkdtemp(prefix="br-ray-", dir="/tmp")
    environment = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **(env or {}),
    }
    command = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={gcs}",
        "--node-ip-address=127.0.0.1",
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
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                    break
            except urllib.error.HTTPError:
                break  # it answers (401 with token auth): it is up
            except OSError:
                assert head.poll() is None, "ray start exited"
                assert time.monotonic() < deadline, "the job server never answered"
                time.sleep(0.5)
        yield Head(f"127.0.0.1:{gcs}", url)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(3)  # a test's head holds nothing worth a longer orderly stop
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(temp_dir, ignore_errors=True)
