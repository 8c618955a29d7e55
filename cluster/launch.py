"""Start a reference service as a child process and wait until it is ready.

A service is ready when it prints ``listening on http://HOST:PORT``; nothing
here sleeps a fixed time. ``Service.stop`` sends SIGTERM and, if the service
does not exit in time, SIGKILL, so a launch never leaves a process behind.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

READY_PREFIX = "listening on "


class LaunchError(Exception):
    """A service exited or stayed silent before printing its ``listening on`` line."""


@dataclass
class Service:
    """A running reference service: its kind, URL and process."""

    kind: str
    url: str
    process: subprocess.Popen
    stderr: IO[str]
    stdout_pump: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.stdout_pump.join(timeout_s)
        self.stderr.close()
        return self.process.returncode

    def stderr_text(self) -> str:
        """What the service has written to stderr so far."""
        self.stderr.seek(0)
        return self.stderr.read()

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _pump(stream: IO[str], lines: queue.Queue) -> None:
    # Drains stdout for the service's whole life so a chatty child never blocks.
    with stream:
        for line in stream:
            lines.put(line)
    lines.put(None)


def _last_line(stderr: IO[str]) -> str:
    stderr.seek(0)
    text = [line.strip() for line in stderr.read().splitlines() if line.strip()]
    return text[-1] if text else "no output"


def start(
    kind: str, args: Sequence[str] = (), stdin: str | None = None, ready_timeout_s: float = 60.0
) -> Service:
    """Run ``blastradius serve KIND ARGS --port 0`` (``stdin`` written to it, then closed)
    and wait for its ``listening on`` line."""
    command = [sys.executable, "-m", "blastradius.cluster", "serve", kind, *args]
    if "--port" not in args:
        command += ["--port", "0"]
    stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 - the Service owns and closes it
    # A session of its own: a terminal's Ctrl-C reaches the driver, which stops the load
    # first and the services last, rather than every process at once.
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    )
    pipe = process.stdin  # a pipe exactly when there is ``stdin`` to give
    if stdin is not None and pipe is not None:
        with contextlib.suppress(BrokenPipeError), pipe:
            pipe.write(stdin)
    lines: queue.Queue = queue.Queue()
    pump = threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True)
    pump.start()
    deadline = time.monotonic() + ready_timeout_s
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            line = ""
        if line and line.startswith(READY_PREFIX):
            return Service(kind, line[len(READY_PREFIX) :].strip(), process, stderr, pump)
        if line is None or not line:
            break
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    process.wait()
    pump.join(5.0)
    reason = _last_line(stderr) if line is None else f"not ready after {ready_timeout_s:g}s"
    stderr.close()
    raise LaunchError(f"{kind} service did not start: {reason}")
