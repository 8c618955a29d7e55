"""Shards: record batches published atomically as Parquet files.

A shard is written under a temporary name that begins with ``_`` and then
renamed to its final name, so a reader listing the directory sees whole
files only (pyarrow and analysis skip names beginning with ``_`` or ``.``).
On object stores (``s3://``, ``gs://``) an upload becomes visible only when
complete, so the final key is written directly.

Layout: ``<run dir>/requests/target=<name>/part-<worker>-<n>.parquet``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs as pafs

from workers.record import SCHEMA

_OBJECT_STORES = {"s3", "gcs"}

# Times and sequence numbers are nearly sorted integers: stored as deltas they take a
# few bits a row (plain, they take 8 bytes and compress poorly). Everything else is
# dictionary-encoded. 39 bytes a request became 11 (BENCHMARKS.md), and writes got faster.
_DELTA_COLUMNS = ("seq", "intended_ns", "sent_ns", "done_ns", "latency_ns", "service_ns")
WRITE_OPTIONS = {
    "compression": "zstd",
    "use_dictionary": [name for name in SCHEMA.names if name not in _DELTA_COLUMNS],
    "column_encoding": dict.fromkeys(_DELTA_COLUMNS, "DELTA_BINARY_PACKED"),
}


def shard_dir(run_dir: str, target: str) -> str:
    """The directory (path or URI) of one target's shards in a run."""
    return f"{run_dir.rstrip('/')}/requests/target={target}"


def shard_name(worker: int, n: int) -> str:
    """File name of worker ``worker``'s ``n``-th shard."""
    return f"part-{worker:04d}-{n:06d}.parquet"


def resolve(location: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and path for a local path or a filesystem URI."""
    if "://" in location:
        return pafs.FileSystem.from_uri(location)
    return pafs.LocalFileSystem(), location


def write_shard(batches: Sequence[pa.RecordBatch], directory: str, name: str) -> str:
    """Publish ``batches`` as one Parquet file ``directory/name``; returns its path."""
    filesystem, path = resolve(directory)
    filesystem.create_dir(path, recursive=True)
    final = f"{path}/{name}"
    table = pa.Table.from_batches(list(batches), schema=SCHEMA)
    if filesystem.type_name in _OBJECT_STORES:
        pq.write_table(table, final, filesystem=filesystem, **WRITE_OPTIONS)
        return final
    temp = f"{path}/_{uuid.uuid4().hex}-{name}"
    try:
        pq.write_table(table, temp, filesystem=filesystem, **WRITE_OPTIONS)
        filesystem.move(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            filesystem.delete_file(temp)
        raise
    return final
