"""Summaries over a run's files, exact, in memory bounded by the groups, not the rows.

``summaries(shards, series)`` gives what ``stats.summary`` gives over the loaded rows,
equal figure for figure, but reads each shard twice, a batch of a few columns at a
time, and never holds the run:

1. Counting: per series, requests, ok requests, error kinds, the first and last
   intended time, and histograms of log-spaced buckets (``select``'s buckets, from 0:
   the top bits of ``float64(value + 1)``, under 1% wide) of the latency and the
   service time of ok requests and of the send lag of sent ones; per series and
   generator, the sent requests and those whose lag is within the saturation bound.
2. Gathering: from the counts, the bucket that holds each wanted rank (nearest rank,
   as ``select.nearest_rank_ranks``), then only the values in those buckets, which
   are sorted to read each rank off its bucket.

Memory is the histograms (series x 8,192 buckets x 3) and the values of the wanted
buckets: each under 1% of the value's width, so a small share of the rows. A shard
that cannot be read is skipped, named (as ``load`` does), before any counting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blastradius.analysis.load import Shard, check_shard, skipped_entry
from blastradius.analysis.select import CHUNK, nearest_rank_ranks
from blastradius.analysis.stats import MS, QUANTILES, SATURATION_LAG_MS, Figures

_BITS = 7  # buckets per octave: as select.MANTISSA_BITS
_WIDTH = 64 << _BITS  # buckets of every int64 from 0 up (below 2**63: 63 octaves)
_MAX = 1 << 62  # values are clipped here for their bucket (never for their figure)
_METRICS = {  # what is selected: its column, which rows, and the fractions wanted
    "latency": ("latency_ns", {**QUANTILES, "max_ms": 1.0}),
    "service": ("service_ns", {"service_p99_ms": 0.99}),
    "lag": ("sent_ns", {"send_lag_p99_ms": 0.99}),
}
_COUNTED = ["ok", "intended_ns", "sent_ns", "latency_ns", "service_ns", "worker", "error"]
_GATHERED = ["ok", "intended_ns", "sent_ns", "latency_ns", "service_ns"]


def buckets(values: np.ndarray) -> np.ndarray:
    """Each value's bucket: the top ``11 + _BITS`` bits of ``float64(value + 1)``, less
    those of 1.0, for values clipped to ``[0, _MAX]``: ordered and log-spaced."""
    key = (np.clip(values, 0, _MAX) + 1).astype(np.float64).view(np.int64)
    key >>= 52 - _BITS
    key -= 1023 << _BITS
    return key


def readable(shards: Sequence[Shard]) -> tuple[list[Shard], list[str]]:
    """The shards whose footer says they are this project's, and ``path: reason`` for the
    others (a truncated file, another schema): read before any row is."""
    good, skipped = [], []
    for shard in shards:
        try:
            with shard.filesystem.open_input_file(shard.path) as source:
                check_shard(pq.ParquetFile(source).schema_arrow)
        except (OSError, ValueError, pa.ArrowException) as exc:
            skipped.append(skipped_entry(shard, exc))
            continue
        good.append(shard)
    return good, skipped


def _batches(shard: Shard, columns: list[str]) -> Iterator[pa.RecordBatch]:
    with shard.filesystem.open_input_file(shard.path) as source:
        yield from pq.ParquetFile(source).iter_batches(batch_size=CHUNK, columns=columns)


def _ints(column: pa.Array) -> np.ndarray:
    """Nanoseconds as int64, nulls as 0 (callers select the rows that have them)."""
    return pc.fill_null(column, 0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _values(batch: pa.RecordBatch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per metric: the values of a batch and which of its rows they are taken over."""
    ok = batch.column("ok").to_numpy(zero_copy_only=False).astype(bool, copy=False)
    sent = batch.column("sent_ns")
    lag = _ints(sent) - batch.column("intended_ns").to_numpy()
    return {
        "latency": (_ints(batch.column("latency_ns")), ok),
        "service": (_ints(batch.column("service_ns")), ok),
        "lag": (lag, pc.is_valid(sent).to_numpy(zero_copy_only=False)),
    }


class _Counts:
    """What the first pass counts, per group code."""

    def __init__(self, ngroups: int) -> None:
        self.requests = np.zeros(ngroups, np.int64)
        self.good = np.zeros(ngroups, np.int64)
        self.first = np.full(ngroups, np.iinfo(np.int64).max)
        self.last = np.full(ngroups, np.iinfo(np.int64).min)
        self.histograms = {m: np.zeros((ngroups, _WIDTH), np.int64) for m in _METRICS}
        self.errors: dict[str, np.ndarray] = defaultdict(lambda: np.zeros(ngroups, np.int64))
        self.lagged: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])

    def add(self, g: int, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        values = _values(batch)
        ok = values["latency"][1]
        intended = batch.column("intended_ns").to_numpy()
        self.requests[g] += batch.num_rows
        self.good[g] += int(ok.sum())
        self.first[g] = min(self.first[g], int(intended.min()))
        self.last[g] = max(self.last[g], int(intended.max()))
        for metric, (v, where) in values.items():
            key = buckets(v[where])
            self.histograms[metric][g] += np.bincount(key, minlength=_WIDTH)
        errors = batch.column("error")
        if not isinstance(errors, pa.DictionaryArray):
            errors = pc.dictionary_encode(errors)
        kinds = errors.dictionary.to_pylist()
        counts = np.bincount(errors.indices.to_numpy(zero_copy_only=False), minlength=len(kinds))
        for kind, n in zip(kinds, counts.tolist(), strict=True):
            self.errors[kind][g] += n
        lag, sent = values["lag"]
        workers, which = np.unique(batch.column("worker").to_numpy()[sent], return_inverse=True)
        n = np.bincount(which, minlength=len(workers))
        within = np.bincount(which[lag[sent] <= SATURATION_LAG_MS * MS], minlength=len(workers))
        for worker, sent_n, within_n in zip(
            workers.tolist(), n.tolist(), within.tolist(), strict=True
        ):
            cell = self.lagged[g, worker]
            cell[0] += sent_n
            cell[1] += within_n


def summaries(shards: Sequence[Shard], series: Callable[[Shard], str]) -> dict[str, dict]:
    """SUMMARY per series (``series`` names a shard's), over the shards' rows, in the
    order the series first appear among the shards; series without rows are left out."""
    labels = list(dict.fromkeys(series(shard) for shard in shards))
    code = {label: i for i, label in enumerate(labels)}
    counts = _Counts(len(labels))
    for shard in shards:
        for batch in _batches(shard, _COUNTED):
            counts.add(code[series(shard)], batch)
    picked = _gather(shards, [code[series(s)] for s in shards], counts)
    kinds = sorted(counts.errors)
    error_counts = np.stack([counts.errors[k] for k in kinds], axis=1) if kinds else None
    saturated = np.zeros(len(labels), bool)
    for (g, _), (n, within) in counts.lagged.items():
        saturated[g] |= within <= int(nearest_rank_ranks(np.array(n), np.array(0.99)))
    figures = Figures(
        requests=counts.requests,
        good=counts.good,
        first=counts.first,
        last=counts.last,
        latency={name: picked["latency"][:, i] for i, name in enumerate(_METRICS["latency"][1])},
        service_p99=picked["service"][:, 0],
        send_lag_p99=picked["lag"][:, 0],
        saturated=saturated,
        error_counts=np.zeros((len(labels), 0), np.int64) if error_counts is None else error_counts,
        kinds=kinds,
    )
    return {label: s for label, s in zip(labels, figures.summaries(), strict=True) if s["requests"]}


def _gather(shards: Sequence[Shard], codes: list[int], counts: _Counts) -> dict[str, np.ndarray]:
    """The second pass: per metric, ``picked[g, j]``, group g's j-th fraction (NaN for a
    group with no values)."""
    ngroups = len(counts.requests)
    picked, wanted, where = {}, {}, {}
    for metric, (_, qs) in _METRICS.items():
        table = counts.histograms[metric]
        n = table.sum(axis=1)
        fractions = np.array(list(qs.values()))
        picked[metric] = np.full((ngroups, len(fractions)), np.nan)
        ends = np.cumsum(table, axis=1)
        ranks = nearest_rank_ranks(np.maximum(n, 1)[:, None], fractions[None, :])
        bucket = np.stack(
            [np.searchsorted(e, r, side="right") for e, r in zip(ends, ranks, strict=True)]
        )
        np.minimum(bucket, _WIDTH - 1, out=bucket)  # a group without values: never read
        before = np.take_along_axis(ends, bucket, 1) - np.take_along_axis(table, bucket, 1)
        inside = ranks - before
        wanted[metric] = np.zeros((ngroups, _WIDTH), bool)
        for g in np.flatnonzero(n).tolist():
            wanted[metric][g, bucket[g]] = True
        where[metric] = (n, bucket, inside)
    found: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for shard, g in zip(shards, codes, strict=True):
        for batch in _batches(shard, _GATHERED):
            for metric, (v, rows) in _values(batch).items():
                v = v[rows]
                key = buckets(v)
                hit = wanted[metric][g][key]
                if hit.any():
                    found[metric, g].append((key[hit], v[hit]))
    for (metric, g), parts in found.items():
        n, bucket, inside = where[metric]
        keys = np.concatenate([k for k, _ in parts])
        values = np.concatenate([v for _, v in parts])
        order = np.lexsort((values, keys))
        keys, values = keys[order], values[order]
        picked[metric][g] = values[np.searchsorted(keys, bucket[g]) + inside[g]]
    return picked
