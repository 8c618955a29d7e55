"""The run directory and its manifest, ``run.json``.

``run.json`` is written when the run starts (status ``running``) and rewritten
as it goes and when it ends (``completed``, ``partial`` or ``interrupted``):
the scenario, run id, times, the Ray cluster, each target's generators (node,
state, lost time and the window of the schedule that is missing), and the
versions of blastradius, Ray and Python. Each write replaces the file whole.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import platform
import secrets
import time
from importlib import metadata
from typing import Any

from blastradius.cluster.status import RunStatus
from blastradius.workers import layout
from blastradius.workers.record import SCHEMA_VERSION


def new_run_id(name: str, now: dt.datetime | None = None) -> str:
    """``<name>-<UTC time>-<4 hex>``, e.g. ``blast-radius-20261126T210000Z-3f9a``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def iso(ns: int | None) -> str | None:
    """Epoch nanoseconds as an ISO-8601 UTC time (None stays None)."""
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")


def versions() -> dict[str, str]:
    """Versions of blastradius, Ray, Python (and pyarrow) for the manifest."""

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {
        "blastradius": version("blastradius"),
        "ray": version("ray"),
        "pyarrow": version("pyarrow"),
        "python": platform.python_version(),
        "schema": str(SCHEMA_VERSION),
    }


def make_run_dir(out: str, run_id: str) -> str:
    """Create ``<out>/<run_id>``; ``OSError`` when it cannot be written."""
    run_dir = layout.join(out, run_id)
    layout.make_dir(run_dir)
    return run_dir


def remove_run_dir(run_dir: str) -> None:
    """Delete a run directory (used when a run never started)."""
    layout.remove_dir(run_dir)


class Manifest:
    """The contents of ``run.json``, written whole on every ``write``."""

    def __init__(self, run_dir: str, run_id: str, scenario: dict, ray_info: dict) -> None:
        self.run_dir = run_dir
        self.data: dict[str, Any] = {
            "run_id": run_id,
            "status": RunStatus.RUNNING,
            "scenario": scenario,
            "started": iso(time.time_ns()),
            "ended": None,
            "ray": ray_info,
            "versions": versions(),
            "targets": {},
        }

    def target(self, name: str) -> dict:
        """The manifest's block for one target (created on first use)."""
        return self.data["targets"].setdefault(name, {"generators": []})

    def finish(self, status: RunStatus) -> None:
        """Record the final status and end time, and write."""
        self.data["status"], self.data["ended"] = status, iso(time.time_ns())
        self.write()

    def write(self) -> None:
        """Replace ``run.json`` whole, atomically for readers; on a full disk, in place
        (its own space is reused), so that a run can still say why it failed."""
        text = json.dumps(self.data, indent=2, default=str).encode()
        location = layout.join(self.run_dir, layout.MANIFEST)
        try:
            layout.publish_bytes(location, text)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            layout.overwrite_bytes(location, text)


def read_manifest(run_dir: str) -> dict:
    """Read a run's ``run.json``."""
    filesystem, path = layout.resolve(layout.join(run_dir, layout.MANIFEST))
    with filesystem.open_input_stream(path) as stream:
        return json.loads(stream.read())
