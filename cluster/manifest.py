"""The run directory and the writing of its manifest, ``run.json``.

What run.json holds is ``workers.run_record.RunRecord``. It is written when the run
starts (status ``running``), rewritten as it goes, and when it ends (``completed``,
``partial``, ``failed`` or ``interrupted``). Each write replaces the file whole.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import platform
import secrets
import time
from dataclasses import replace
from importlib import metadata
from typing import Any

from blastradius.workers import layout
from blastradius.workers.record import SCHEMA_VERSION
from blastradius.workers.run_record import RunRecord, RunStatus, TargetBlock, Versions


def new_run_id(name: str, now: dt.datetime | None = None) -> str:
    """``<name>-<UTC time>-<4 hex>``, e.g. ``blast-radius-20261126T210000Z-3f9a``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def iso(ns: int | None) -> str | None:
    """Epoch nanoseconds as an ISO-8601 UTC time (None stays None)."""
    if ns is None:
        return None
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat(timespec="milliseconds")


def versions() -> Versions:
    """Versions of blastradius, Ray, Python (and pyarrow) for the manifest."""

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return Versions(
        blastradius=version("blastradius"),
        ray=version("ray"),
        pyarrow=version("pyarrow"),
        python=platform.python_version(),
        schema=str(SCHEMA_VERSION),
    )


def make_run_dir(out: str, run_id: str) -> str:
    """Create ``<out>/<run_id>``; ``OSError`` when it cannot be written."""
    run_dir = layout.join(out, run_id)
    layout.make_dir(run_dir)
    return run_dir


def remove_run_dir(run_dir: str) -> None:
    """Delete a run directory (used when a run never started)."""
    layout.remove_dir(run_dir)


class Manifest:
    """A run's ``run.json`` as it is being written: the record so far, written whole on
    every ``write``."""

    def __init__(self, run_dir: str, record: RunRecord) -> None:
        self.run_dir = run_dir
        self.record = replace(record, started=record.started or iso(time.time_ns()))

    def update(self, **changes: Any) -> None:
        """Change fields of the record (not written until ``write``)."""
        self.record = replace(self.record, **changes)

    def target(self, name: str) -> TargetBlock:
        """The block of one target (empty until set)."""
        return self.record.target(name)

    def update_target(self, name: str, **changes: Any) -> TargetBlock:
        """Change fields of one target's block (added when new); the block."""
        block = replace(self.record.target(name), **changes)
        self.record = self.record.with_target(name, block)
        return block

    def set_target(self, name: str, block: TargetBlock) -> None:
        """Replace one target's block."""
        self.record = self.record.with_target(name, block)

    def finish(self, status: RunStatus) -> None:
        """Record the final status and end time, and write."""
        self.update(status=status, ended=iso(time.time_ns()))
        self.write()

    def write(self) -> None:
        """Replace ``run.json`` whole, atomically for readers; on a full disk, in place
        (its own space is reused), so that a run can still say why it failed."""
        text = json.dumps(self.record.to_json(), indent=2, default=str).encode()
        location = layout.join(self.run_dir, layout.MANIFEST)
        try:
            layout.publish_bytes(location, text)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            layout.overwrite_bytes(location, text)


def read_manifest(run_dir: str) -> dict[str, Any]:
    """A run's ``run.json`` as JSON (``RunRecord.from_json`` reads it as a record)."""
    filesystem, path = layout.resolve(layout.join(run_dir, layout.MANIFEST))
    with filesystem.open_input_stream(path) as stream:
        return json.loads(stream.read())
