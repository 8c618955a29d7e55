"""Summaries and timelines over a run's files, exact, in memory bounded by the groups
(series, or series x windows), not the rows.

``summaries(shards, series)`` and ``timeline(shards, series, ...)`` give what
``stats.summary`` and ``stats.timeline`` give over the loaded rows, equal figure for
figure, but read each shard twice, a batch of a few columns at a time, and never hold
the run:

1. Counting: per series, requests, ok requests, error kinds, the first and last
   intended time, and histograms of log-spaced buckets (``select.Selection``: the top
   bits of ``float64(value + 1)``, 0.07% wide) of the latency and the service time of
   ok requests and of the send lag of sent ones; per series and generator, the sent
   requests and those whose lag is within the saturation bound.
2. Gathering: from the counts, the bucket that holds each wanted rank (nearest rank),
   then only the values in those buckets, which are sorted to read each rank off.

A summary gathers most of its values while it counts: it counts a sample of the shards
first (``sample_shards``), guesses from it where the wanted ranks will fall
(``Selection.keep_near``) and keeps those buckets' values from the other shards; the
second pass then reads the sample again, and the others only where the guess missed.

A timeline's cells are (series, window of intended time), its windows found first in
the shards' statistics. Memory is the histograms (cells x buckets, within
``select.MAX_BINS``: fewer buckets per octave for many cells) and the values of the
wanted buckets, each a narrow band of values. The report's figures (the percentile
curve's points, the histogram's counts, each endpoint's availability) are read the
same way. A shard
that cannot be read is skipped, named (as ``load`` does), before any counting.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from blastradius.analysis.load import Runs, Shard, check_shard, locate, skipped_entry
from blastradius.analysis.select import CHUNK, Selection, nearest_rank_ranks
from blastradius.analysis.slo import window_columns
from blastradius.analysis.stats import (
    MS,
    QUANTILES,
    SATURATION_LAG_MS,
    TIMELINE_QUANTILES,
    Figures,
    timeline_frame,
)
from blastradius.workers import arrow
from blastradius.workers.run_record import Objectives

if TYPE_CHECKING:
    import pandas as pd

_SUMMARY_METRICS = {  # what a summary selects, and the fractions wanted of it
    "latency": {**QUANTILES, "max_ms": 1.0},
    "service": {"service_p99_ms": 0.99},
    "lag": {"send_lag_p99_ms": 0.99},
}
COUNTED = ["ok", "intended_ns", "sent_ns", "latency_ns", "service_ns", "worker", "error"]
GATHERED = ["ok", "intended_ns", "sent_ns", "latency_ns", "service_ns"]
SAMPLE_EVERY = 10  # a summary's sample: one shard in this many (sample_shards)


def open_runs(paths: Sequence[str]) -> tuple[Runs, list[Shard]]:
    """The manifests of runs (or directories of runs), in the order given, and their
    readable shards, the others named in ``skipped``: no row is read (``Runs.rows`` is
    empty; the functions here read the shards). ``FileNotFoundError`` as ``load``."""
    manifests, shards = {}, []
    for path in paths:
        found, more = locate(path)
        manifests.update(found)
        shards += more
    shards, skipped = readable(shards)
    return Runs(None, manifests, skipped), shards


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
    # Decoding columns on threads pays only where there is a second core to run them.
    threads = len(os.sched_getaffinity(0)) > 1 if hasattr(os, "sched_getaffinity") else True
    with shard.filesystem.open_input_file(shard.path) as source:
        yield from pq.ParquetFile(source).iter_batches(
            batch_size=CHUNK, columns=columns, use_threads=threads
        )


def _ints(column: pa.Array) -> np.ndarray:
    """Nanoseconds as int64, nulls as 0 (callers select the rows that have them)."""
    values = arrow.numpy(column).astype(np.int64, copy=False)
    return np.where(arrow.valid(column), values, 0) if column.null_count else values


def _values(batch: pa.RecordBatch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per metric: the values of a batch and which of its rows they are taken over."""
    ok = arrow.numpy(batch.column("ok"))
    sent = batch.column("sent_ns")
    lag = _ints(sent) - arrow.numpy(batch.column("intended_ns"))
    return {
        "latency": (_ints(batch.column("latency_ns")), ok),
        "service": (_ints(batch.column("service_ns")), ok),
        "lag": (lag, arrow.valid(sent)),
    }


def _span(shard: Shard) -> tuple[int, int]:
    """The first and last intended time of a shard's rows, from its row groups'
    statistics (the column itself where a writer left them out)."""
    with shard.filesystem.open_input_file(shard.path) as source:
        parquet = pq.ParquetFile(source)
        column = parquet.schema_arrow.get_field_index("intended_ns")
        stats = [
            parquet.metadata.row_group(i).column(column).statistics
            for i in range(parquet.metadata.num_row_groups)
        ]
        if all(s is not None and s.has_min_max for s in stats):
            return min(s.min for s in stats), max(s.max for s in stats)
        intended = parquet.read(columns=["intended_ns"]).column(0)
        return pc.min(intended).as_py(), pc.max(intended).as_py()


def spans(shards: Sequence[Shard], series: Callable[[Shard], str]) -> dict[str, tuple[int, int]]:
    """Each series' first and last intended time, from its shards' statistics (a series
    whose shards hold no row is left out)."""
    found: dict[str, tuple[int, int]] = {}
    for shard in shards:
        low, high = _span(shard)
        if low is None:
            continue
        label = series(shard)
        before = found.get(label, (low, high))
        found[label] = (min(before[0], low), max(before[1], high))
    return found


def curve_fractions(n: int) -> np.ndarray:
    """Where a latency-by-percentile curve of ``n`` values is drawn: 400 points spaced
    evenly in "nines" (1 - q from 1 down to 1/n), and 0 (the smallest value)."""
    q = np.unique(np.concatenate([1.0 - np.geomspace(1.0, 1.0 / n, 400), [0.0]]))
    return q[q < 1.0]


def curves(
    shards: Sequence[Shard], series: Callable[[Shard], str]
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Per series, the nearest-rank latency (``latency_ns``) and service time
    (``service_ns``) of ok requests at ``curve_fractions`` of their count, in ms: the
    percentile curve's points, exact, in two passes over the series' shards."""
    result: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for label in sorted({series(shard) for shard in shards}):
        mine = [shard for shard in shards if series(shard) == label]
        n = sum(
            int(pc.sum(batch.column("ok")).as_py() or 0)
            for shard in mine
            for batch in _batches(shard, ["ok"])
        )
        if not n:
            continue
        q = curve_fractions(n)
        fractions = dict(zip(map(str, range(len(q))), q.tolist(), strict=True))
        selection = Selection(1, {"latency": fractions, "service": fractions})
        picked = select_one(mine, GATHERED, _values, selection)
        result[label] = {
            "latency_ns": (q, picked["latency"][0] / MS),
            "service_ns": (q, picked["service"][0] / MS),
        }
    return result


def select_one(
    shards: Sequence[Shard],
    columns: list[str],
    values: Callable[[pa.RecordBatch], dict[str, tuple[np.ndarray, np.ndarray]]],
    selection: Selection,
    counted: Callable[[pa.RecordBatch, dict], None] | None = None,
) -> dict[str, np.ndarray]:
    """The picks of a selection of one group over the shards' rows (``values``: the
    metrics of a batch, as ``_values``): every batch counted (and shown to ``counted``),
    then read again for the wanted buckets' values."""
    for gathering in (False, True):
        for shard in shards:
            for batch in _batches(shard, columns):
                found = values(batch)
                if gathering:
                    selection.gather(0, found)
                    continue
                selection.count(0, found)
                if counted is not None:
                    counted(batch, found)
    return selection.finish()


def latency_counts(
    shards: Sequence[Shard], series: Callable[[Shard], str], edges_ms: np.ndarray
) -> dict[str, np.ndarray]:
    """Per series, how many ok requests' latencies (ms) fall in each bin of ``edges_ms``
    (as ``np.histogram`` counts them), in one pass."""
    counts: dict[str, np.ndarray] = {}
    for shard in shards:
        mine = counts.setdefault(series(shard), np.zeros(len(edges_ms) - 1, np.int64))
        for batch in _batches(shard, ["ok", "latency_ns"]):
            ok = arrow.numpy(batch.column("ok"))
            latency = _ints(batch.column("latency_ns"))[ok]
            mine += np.histogram(latency / MS, bins=edges_ms)[0]
    return counts


def endpoint_availability(
    shards: Sequence[Shard], series: Callable[[Shard], str]
) -> dict[tuple[str, int], dict[str, float]]:
    """Per (series, endpoint): its availability (ok over requests), in one pass."""
    requests: dict[tuple[str, int], list[int]] = {}
    for shard in shards:
        label = series(shard)
        for batch in _batches(shard, ["endpoint", "ok"]):
            endpoint = arrow.numpy(batch.column("endpoint"))
            ok = arrow.numpy(batch.column("ok"))
            total, good = np.bincount(endpoint), np.bincount(endpoint[ok], minlength=0)
            for e in np.flatnonzero(total).tolist():
                cell = requests.setdefault((label, e), [0, 0])
                cell[0] += int(total[e])
                cell[1] += int(good[e]) if e < len(good) else 0
    return {key: {"availability": good / n} for key, (n, good) in sorted(requests.items())}


def timeline(
    shards: Sequence[Shard],
    series: Callable[[Shard], str],
    window_ns: int = 1_000_000_000,
    start_ns: int | None = None,
    quantiles: dict[str, float] | None = None,
    service: dict[str, float] | None = None,
) -> pd.DataFrame:
    """``stats.timeline`` of the shards' rows, with ``target`` the series (in sorted
    order): windows of intended time from ``start_ns``, else from each series' first
    intended time, found in the shards' statistics before the two passes."""
    latency_qs = {**TIMELINE_QUANTILES, **(quantiles or {})}
    metrics = {"latency": latency_qs, "service": service or {}}
    spanned = [(shard, _span(shard)) for shard in shards]
    spanned = [(shard, span) for shard, span in spanned if span[0] is not None]  # no rows
    shards = [shard for shard, _ in spanned]
    labels = sorted({series(shard) for shard in shards})
    if not labels:
        names = [*latency_qs, *metrics["service"]]
        return timeline_frame([], 1, window_ns, *(np.zeros(0, np.int64),) * 2, {}, names)
    codes = [labels.index(series(shard)) for shard in shards]
    first = np.full(len(labels), np.iinfo(np.int64).max)
    last = np.full(len(labels), np.iinfo(np.int64).min)
    for (_, (low, high)), g in zip(spanned, codes, strict=True):
        first[g], last[g] = min(first[g], low), max(last[g], high)
    origins = first if start_ns is None else np.full(len(labels), start_ns)
    nwindows = int(((last - origins) // window_ns).max()) + 1
    ncells = len(labels) * nwindows
    selection = Selection(ncells, {m: qs for m, qs in metrics.items() if qs})
    scheduled, good = np.zeros(ncells, np.int64), np.zeros(ncells, np.int64)
    for gathering in (False, True):
        for shard, g in zip(shards, codes, strict=True):
            for batch in _batches(shard, GATHERED):
                intended = arrow.numpy(batch.column("intended_ns"))
                cells = g * nwindows + (intended - origins[g]) // window_ns
                values = _values(batch)
                if gathering:
                    selection.gather(cells, values)
                    continue
                scheduled += np.bincount(cells, minlength=ncells)
                good += np.bincount(cells[values["latency"][1]], minlength=ncells)
                selection.count(cells, values)
    picked = selection.finish()
    qs = {name: picked[m][:, j] for m in picked for j, name in enumerate(metrics[m])}
    return timeline_frame(labels, nwindows, window_ns, scheduled, good, qs)


def _target(shard: Shard) -> str:
    return shard.target


@dataclass(frozen=True)
class FileFigures:
    """One run's figures target by target, from its files (``slo.TargetFigures``): each
    read from that target's shards when asked."""

    shards: Sequence[Shard]

    def targets(self) -> list[str]:
        """The targets that have shards."""
        return sorted({shard.target for shard in self.shards})

    def _of(self, target: str) -> list[Shard]:
        return [shard for shard in self.shards if shard.target == target]

    def summary(self, target: str) -> dict | None:
        """The target's SUMMARY, None when it has no rows (a session target's with its
        session figures)."""
        from blastradius.analysis.sessions import session_figures
        from blastradius.analysis.slo import session_summary

        mine = self._of(target)
        found = summaries(mine, _target).get(target)
        return None if found is None else found | session_summary(session_figures(mine, 0))

    def windows(self, target: str, objectives: Objectives, start_ns: int | None) -> pd.DataFrame:
        """``slo.window_figures`` of the target's rows."""
        quantiles, service = window_columns(objectives)
        window_ns = objectives.window_ns
        assert window_ns is not None  # asked for windowed objectives only (slo.check_figures)
        return timeline(self._of(target), _target, window_ns, start_ns, quantiles, service)


class _Counts:
    """What a summary counts besides its selections, per series code."""

    def __init__(self, nseries: int) -> None:
        self.requests = np.zeros(nseries, np.int64)
        self.good = np.zeros(nseries, np.int64)
        self.first = np.full(nseries, np.iinfo(np.int64).max)
        self.last = np.full(nseries, np.iinfo(np.int64).min)
        self.errors: dict[str, np.ndarray] = {}  # error kind -> count per series
        self.lagged: dict[tuple[int, int], list[int]] = {}  # (series, generator) -> sent, within

    def add(self, g: int, batch: pa.RecordBatch, values: dict) -> None:
        """Count a batch of series ``g`` (``values``: its ``_values``)."""
        intended = arrow.numpy(batch.column("intended_ns"))
        self.requests[g] += batch.num_rows
        self.good[g] += int(values["latency"][1].sum())
        self.first[g] = min(self.first[g], int(intended.min()))
        self.last[g] = max(self.last[g], int(intended.max()))
        errors = batch.column("error")
        if not isinstance(errors, pa.DictionaryArray):
            errors = pc.dictionary_encode(errors)
        kinds = errors.dictionary.to_pylist()
        counts = np.bincount(arrow.numpy(errors.indices), minlength=len(kinds))
        for kind, n in zip(kinds, counts.tolist(), strict=True):
            self.errors.setdefault(kind, np.zeros(len(self.requests), np.int64))[g] += n
        lag, sent = values["lag"]
        workers = arrow.numpy(batch.column("worker"))
        in_time = sent & (lag <= SATURATION_LAG_MS * MS)
        if workers.min() == workers.max():  # a shard is one generator's
            n = np.zeros(int(workers[0]) + 1, np.int64)
            within = n.copy()
            n[-1], within[-1] = np.count_nonzero(sent), np.count_nonzero(in_time)
        else:
            n = np.bincount(workers[sent])
            within = np.bincount(workers[in_time], minlength=len(n))
        for worker in np.flatnonzero(n).tolist():
            cell = self.lagged.setdefault((g, worker), [0, 0])
            cell[0] += int(n[worker])
            cell[1] += int(within[worker])

    def add_counts(self, other: _Counts) -> None:
        """Add the counts of ``other`` (of the same series, counted elsewhere)."""
        self.requests += other.requests
        self.good += other.good
        np.minimum(self.first, other.first, out=self.first)
        np.maximum(self.last, other.last, out=self.last)
        for kind, counts in other.errors.items():
            self.errors.setdefault(kind, np.zeros(len(self.requests), np.int64))[:] += counts
        for key, (sent, within) in other.lagged.items():
            cell = self.lagged.setdefault(key, [0, 0])
            cell[0] += sent
            cell[1] += within

    def figures(self, picked: dict[str, np.ndarray]) -> Figures:
        """The figures of each series, with the selection's ``picked`` percentiles."""
        kinds = sorted(self.errors)
        nseries = len(self.requests)
        return Figures(
            requests=self.requests,
            good=self.good,
            first=self.first,
            last=self.last,
            latency={name: picked["latency"][:, i] for i, name in enumerate(QUANTILES_AND_MAX)},
            service_p99=picked["service"][:, 0],
            send_lag_p99=picked["lag"][:, 0],
            saturated=self.saturated(),
            error_counts=np.stack([self.errors[k] for k in kinds], axis=1)
            if kinds
            else np.zeros((nseries, 0), np.int64),
            kinds=kinds,
        )

    def saturated(self) -> np.ndarray:
        """Per series: whether a generator's send-lag p99 passed the saturation bound
        (counting suffices: ``stats._saturated``)."""
        late = np.zeros(len(self.requests), bool)
        for (g, _), (n, within) in self.lagged.items():
            late[g] |= within <= int(nearest_rank_ranks(np.array(n), np.array(0.99)))
        return late


def labels_of(
    shards: Sequence[Shard], series: Callable[[Shard], str], order: Sequence[str] = ()
) -> list[str]:
    """The series of ``shards``: those in ``order`` first, in that order, then the others
    sorted (as ``stats.summary`` orders its groups)."""
    present = {series(shard) for shard in shards}
    labels = [label for label in order if label in present]
    return labels + sorted(present - set(labels))


def start_summaries(nseries: int) -> tuple[_Counts, Selection]:
    """Empty counts and selection for ``nseries`` series' summaries."""
    return _Counts(nseries), Selection(nseries, _SUMMARY_METRICS)


def count_batch(counts: _Counts, selection: Selection, g: int, batch: pa.RecordBatch) -> None:
    """The first pass over a batch of series ``g`` (``COUNTED`` columns)."""
    if batch.num_rows:
        values = _values(batch)
        counts.add(g, batch, values)
        selection.count(g, values)


def gather_batch(
    selection: Selection, g: int, batch: pa.RecordBatch, missing: bool = False
) -> None:
    """The second pass over a batch of series ``g`` (``GATHERED`` columns; ``missing``:
    as ``Selection.gather``)."""
    if batch.num_rows:
        selection.gather(g, _values(batch), missing)


def finish_summaries(labels: list[str], counts: _Counts, selection: Selection) -> dict[str, dict]:
    """SUMMARY per series from both passes; series without rows are left out."""
    figures = counts.figures(selection.finish())
    return {label: s for label, s in zip(labels, figures.summaries(), strict=True) if s["requests"]}


def summaries(
    shards: Sequence[Shard], series: Callable[[Shard], str], order: Sequence[str] = ()
) -> dict[str, dict]:
    """SUMMARY per series (``series`` names a shard's), over the shards' rows: the series
    in ``order`` first, in that order, then the others sorted (as ``stats.summary``
    orders its groups); series without rows are left out."""
    labels = labels_of(shards, series, order)
    codes = [labels.index(series(shard)) for shard in shards]
    sample = sample_shards(codes)
    sampled = set(sample)
    counts, selection = start_summaries(len(labels))
    for i in sample + [i for i in range(len(shards)) if i not in sampled]:
        for batch in _batches(shards[i], COUNTED):
            count_batch(counts, selection, codes[i], batch)
        if i == sample[-1]:
            selection.keep_near()
    missing = selection.missing
    for i, (shard, g) in enumerate(zip(shards, codes, strict=True)):
        if i in sampled or missing:
            for batch in _batches(shard, GATHERED):
                gather_batch(selection, g, batch, missing=i not in sampled)
    return finish_summaries(labels, counts, selection)


def step_summaries(shards: Sequence[Shard], steps: int) -> list[dict | None]:
    """SUMMARY of each step of a session target (its rows' ``step``: 0 to ``steps`` - 1)
    over its shards, in two passes (count, then gather); None for a step without rows.
    Rows of no session (``step`` null) are left out."""
    counts, selection = start_summaries(steps)
    for shard in shards:
        for batch in _batches(shard, [*COUNTED, "step"]):
            for g, part in _by_step(batch, steps):
                count_batch(counts, selection, g, part)
    for shard in shards:
        for batch in _batches(shard, [*GATHERED, "step"]):
            for g, part in _by_step(batch, steps):
                gather_batch(selection, g, part)
    figures = counts.figures(selection.finish())
    return [s if s["requests"] else None for s in figures.summaries()]


def _by_step(batch: pa.RecordBatch, steps: int) -> Iterator[tuple[int, pa.RecordBatch]]:
    column = batch.column("step")
    step = np.where(arrow.valid(column), arrow.numpy(column), -1)
    for g in np.unique(step):
        if 0 <= g < steps:
            yield int(g), batch.filter(arrow.column(pa.bool_(), step == g))


def sample_shards(codes: Sequence[int]) -> list[int]:
    """The shards a summary guesses its wanted buckets from (``Selection.keep_near``),
    by index: of each series' shards (``codes``: each shard's series), one in
    ``SAMPLE_EVERY``, at least one, spread over them (shards are listed by generator
    and then by time, so the sample spans the run)."""
    sample = []
    for code in sorted(set(codes)):
        mine = [i for i, c in enumerate(codes) if c == code]
        picks = -(-len(mine) // SAMPLE_EVERY)
        sample += [mine[int((j + 0.5) * len(mine) / picks)] for j in range(picks)]
    return sorted(sample)


QUANTILES_AND_MAX = tuple(_SUMMARY_METRICS["latency"])
