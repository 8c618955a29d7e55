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
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports: all held open while they are picked, as two
    separate picks may get the same port back (Ray refuses a port given twice)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@dataclass(frozen=True)
class Head:
    """A running head: its GCS address (``--address``), job server URL and Prometheus
    endpoint (Ray's metrics export)."""

    address: str
    dashboard: str
    metrics: str


ATTEMPTS = 3


@contextlib.contextmanager
def ray_head(env: dict[str, str] | None = None) -> Iterator[Head]:
    """A head with ``env`` over this process's environment (``RAY_AUTH_MODE`` defaults to
    ``disabled``), ready when its job server answers.

    The ports are picked free and then released before Ray binds them, and Ray picks more
    of its own; on a shared machine one may be taken in between, so a head that exits
    while starting is started again on fresh ports (up to ``ATTEMPTS`` times). Its own
    output is kept, and the last lines of it are the failure's message.
    """
    environment = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        **(env or {}),
    }
    for attempt in range(1, ATTEMPTS + 1):
        # Ray's Unix sockets live under --temp-dir, whose path must stay short (sun_path).
        temp_dir = tempfile.mkdtemp(prefix="br-ray-", dir="/tmp")
        head, head_info = _start(environment, temp_dir)
        try:
            if _wait_ready(head, head_info.dashboard):
                yield head_info
                return
            log = (Path(temp_dir) / "ray-start.log").read_text(errors="replace")
            assert attempt < ATTEMPTS, "ray start exited:\n" + "\n".join(log.splitlines()[-20:])
        finally:
            _stop(head)
            shutil.rmtree(temp_dir, ignore_errors=True)


def _start(environment: dict[str, str], temp_dir: str) -> tuple[subprocess.Popen, Head]:
    dashboard, gcs, client, agent, agent_grpc, metrics = free_ports(6)
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
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={agent}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--temp-dir={temp_dir}",
    ]
    with open(Path(temp_dir) / "ray-start.log", "wb") as log:
        head = subprocess.Popen(
            command,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return head, Head(
        f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", f"http://127.0.0.1:{metrics}/metrics"
    )


def _wait_ready(head: subprocess.Popen, url: str) -> bool:
    """True once the job server answers; False if ``ray start`` exits first."""
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answers (401 with token auth): it is up
        except OSError:
            if head.poll() is not None:
                return False
            assert time.monotonic() < deadline, "the job server never answered"
            time.sleep(0.5)


def _stop(head: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(3)  # a test's head holds nothing worth a longer orderly stop
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait()
