"""Joining the Ray cluster a run runs on: an embedded one, or one at an address.

An embedded cluster is started with as many CPUs as this machine has cores and its
Prometheus endpoint on 127.0.0.1. A cluster at an address is checked first: Ray itself
retries an unreachable one for minutes, and says a refused token only on stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Iterator

import ray


class RunInputError(Exception):
    """Bad input found before anything was started (exit 2): the message is one line."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message in one line (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def connect(address: str | None, metrics_port: int | None = None) -> bool:
    """Join the cluster at ``address``, or start an embedded one (as many CPUs as this
    machine has cores, its Prometheus endpoint on ``metrics_port``, default a free
    one); True when embedded."""
    if address is None:
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            _metrics_export_port=metrics_port or None,
            # Ray nices workers to 15 by default: generators would yield to everything.
            _system_config={"worker_niceness": 0},
            logging_level=logging.ERROR,
        )
        return True
    if not _reachable(address):
        raise RunInputError(
            f"--address {address}: cannot join a Ray cluster: nothing answers there"
        )
    with _core_log() as core_log:
        try:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            error = exc
        else:
            return False
    if "Unauthenticated" in "".join(core_log):
        reason = "it refused this process's token (RAY_AUTH_MODE, RAY_AUTH_TOKEN)"
    else:
        reason = first_line(error)
    raise RunInputError(f"--address {address}: cannot join a Ray cluster: {reason}")


@contextlib.contextmanager
def _core_log() -> Iterator[list[str]]:
    """While joining: what Ray's C++ core writes to stderr (a refused token, retries)
    goes to a file instead, and into the list once the block ends; the CLI's errors
    stay one line. Ray's own log files keep it all."""
    text: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text.append(captured.read().decode(errors="replace"))


def _reachable(address: str) -> bool:
    """Whether a ``host:port`` (or ``ray://host:port``) address accepts a connection.

    Ray itself retries an unreachable cluster for minutes; other forms (``auto``) are
    left to Ray.
    """
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return True
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError:
        return False
    return True


def metrics_url() -> str:
    """Where this (embedded) node serves Prometheus metrics: Ray's and blastradius_*."""
    here = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == here)
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
