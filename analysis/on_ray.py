"""``analyze --ray``: a run's summaries computed on a Ray cluster with Ray Data, equal to
``analysis.scan``'s figure for figure.

The same two passes as ``scan``, spread over the cluster: Ray Data reads the shards
(the columns a pass needs, with each row's file), and every batch becomes a partial
result on the node that read it: for the first pass the counts and histograms, for
the second the values of the wanted buckets. The driver adds the partial results up
and picks each rank exactly as ``scan`` does, so only the partial results cross the
network, never the rows. It pays where the files are on storage every node reads (an
object store, a shared volume) and the cluster has more cores than this machine.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from blastradius.analysis import scan
from blastradius.analysis.load import Shard

_PATH = "path"  # the column Ray Data adds with each row's file
_PARTIAL = "partial"


def _by_shard(batch: pa.Table, codes: dict[str, int]) -> list[tuple[int, pa.Table]]:
    """A batch's rows by the series code of the file they came from."""
    paths = batch.column(_PATH)
    parts = []
    for path in pc.unique(paths).to_pylist():
        rows = batch.filter(pc.equal(paths, path)).drop_columns([_PATH])
        parts.append((codes[path], rows))
    return parts


def _counted(batch: pa.Table, codes: dict[str, int], nseries: int) -> dict[str, Any]:
    counts, selection = scan.start_summaries(nseries)
    for g, rows in _by_shard(batch, codes):
        for part in rows.to_batches():
            scan.count_batch(counts, selection, g, part)
    return {_PARTIAL: [pickle.dumps((counts, selection.histograms))]}


def _gathered(batch: pa.Table, codes: dict[str, int], planned: bytes) -> dict[str, Any]:
    selection = pickle.loads(planned)
    for g, rows in _by_shard(batch, codes):
        for part in rows.to_batches():
            scan.gather_batch(selection, g, part)
    return {_PARTIAL: [pickle.dumps(selection.found)]}


def _read(shards: Sequence[Shard], columns: list[str]) -> Any:
    import ray.data

    logging.getLogger("ray.data").setLevel(logging.ERROR)  # the answer is the output
    with warnings.catch_warnings():  # Ray 2.60's own DataContext() sets a field it deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        ray.data.DataContext.get_current().enable_progress_bars = False
    paths = [shard.path for shard in shards]
    found = ray.data.read_parquet(paths, filesystem=shards[0].filesystem, include_paths=True)
    return found.select_columns([*columns, _PATH])  # read no other column


def summaries(
    shards: Sequence[Shard], series: Callable[[Shard], str], order: Sequence[str] = ()
) -> dict[str, dict]:
    """``scan.summaries`` of the shards, computed on the Ray cluster this process has
    joined (``ray.init`` first)."""
    labels = scan.labels_of(shards, series, order)
    if not shards:
        return {}
    codes = {shard.path: labels.index(series(shard)) for shard in shards}
    counts, selection = scan.start_summaries(len(labels))
    first = _read(shards, scan.COUNTED).map_batches(
        _counted, batch_format="pyarrow", fn_kwargs={"codes": codes, "nseries": len(labels)}
    )
    for row in first.iter_rows():
        partial, histograms = pickle.loads(row[_PARTIAL])
        counts.add_counts(partial)
        selection.add_counts(histograms)
    selection.plan()
    planned = pickle.dumps(selection)
    second = _read(shards, scan.GATHERED).map_batches(
        _gathered, batch_format="pyarrow", fn_kwargs={"codes": codes, "planned": planned}
    )
    for row in second.iter_rows():
        selection.add_found(pickle.loads(row[_PARTIAL]))
    return scan.finish_summaries(labels, counts, selection)
