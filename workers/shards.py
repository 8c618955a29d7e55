"""Shards: record batches published as Parquet files (where and how: ``layout``)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from blastradius.workers import layout
from blastradius.workers.record import SCHEMA

# Times and sequence numbers are nearly sorted integers: stored as deltas they take a
# few bits a row (plain, they take 8 bytes and compress poorly). Everything else is
# dictionary-encoded. 39 bytes a request became 11 (BENCHMARKS.md), and writes got faster.
# Columns that rise (or nearly) through a shard; a session's index is one of them; and
# the time to first byte, a small number that bit-packs where a dictionary of it cannot.
_DELTA_COLUMNS = (
    *("seq", "intended_ns", "sent_ns", "done_ns", "latency_ns", "service_ns", "session"),
    "ttfb_ns",
)
WRITE_OPTIONS = {
    "compression": "zstd",
    "use_dictionary": [name for name in SCHEMA.names if name not in _DELTA_COLUMNS],
    "column_encoding": dict.fromkeys(_DELTA_COLUMNS, "DELTA_BINARY_PACKED"),
}


def write_shard(batches: Sequence[pa.RecordBatch], directory: str, name: str) -> str:
    """Publish ``batches`` as one Parquet file ``directory/name``; returns its path."""
    layout.make_dir(directory)
    table = pa.Table.from_batches(list(batches), schema=SCHEMA)
    return layout.publish(
        layout.join(directory, name),
        lambda filesystem, path: pq.write_table(
            table, path, filesystem=filesystem, **WRITE_OPTIONS
        ),
    )
