"""A session target's sessions, from its rows: how many started and how many completed,
how long a completed journey took from its arrival, and where the others ended (a
funnel by step).

A session's id is its index among the run's arrivals, so ids are dense from 0, and
what is kept per session is arrays indexed by id: memory is bounded by the sessions
(about 22 bytes each, and a byte a step), never by the rows, read a batch at a time.
A session completed when every row of it is ok; it ended at the step of its one
failure that is not ``skipped``, or was cut (its time ran out, or the load was
stopped) when all its failed rows are ``skipped``. A journey's duration runs from
its first step's intended time (the arrival) to its last row's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from blastradius.analysis.load import Shard, has_column
from blastradius.analysis.scan import _batches
from blastradius.analysis.select import nearest_rank_ranks
from blastradius.analysis.stats import MS, QUANTILES
from blastradius.workers import arrow
from blastradius.workers.record import NULL_NS

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ["session", "step", "intended_ns", "done_ns", "ok", "error"]
DURATION_QUANTILES = {**QUANTILES, "max_ms": 1.0}


class _Sessions:
    """Per session id: first intended time, last end, whether any row failed, the
    step its ending failure was at (+1; 0: none), and per step whether a row was ok."""

    def __init__(self, steps: int) -> None:
        self.steps, self.size = steps, 0
        self.seen = np.zeros(0, bool)
        self.start = np.zeros(0, np.int64)
        self.end = np.zeros(0, np.int64)
        self.failed = np.zeros(0, bool)
        self.ended = np.zeros(0, np.int32)
        self.reached = np.zeros((steps, 0), bool)

    def _grow(self, size: int) -> None:
        def grown(array: np.ndarray, fill: object) -> np.ndarray:
            new = np.full((*array.shape[:-1], size), fill, array.dtype)
            new[..., : self.size] = array
            return new

        self.seen, self.failed = grown(self.seen, False), grown(self.failed, False)
        self.start = grown(self.start, np.iinfo(np.int64).max)
        self.end = grown(self.end, np.iinfo(np.int64).min)
        self.ended, self.reached = grown(self.ended, 0), grown(self.reached, False)
        self.size = size

    def add(self, batch: pa.RecordBatch) -> None:
        column = batch.column("session")
        has = arrow.valid(column)
        if not has.any():
            return
        ids = arrow.numpy(column)[has].astype(np.int64)
        if ids.max() >= self.size:
            self._grow(max(int(ids.max()) + 1, 2 * self.size, 1024))
        step = arrow.numpy(batch.column("step"))[has].astype(np.int64)
        intended = arrow.numpy(batch.column("intended_ns"))[has]
        done_column = batch.column("done_ns")
        done = np.where(arrow.valid(done_column), arrow.numpy(done_column), NULL_NS)[has]
        ok = arrow.numpy(batch.column("ok"))[has]
        self.seen[ids] = True
        np.minimum.at(self.start, ids, intended)
        np.maximum.at(self.end, ids, done)
        self.failed[ids[~ok]] = True
        inside = (step >= 0) & (step < self.steps)
        self.reached[step[ok & inside], ids[ok & inside]] = True
        errors = batch.column("error")
        if not isinstance(errors, pa.DictionaryArray):
            errors = pc.dictionary_encode(errors)
        kinds = errors.dictionary.to_pylist()
        ending = np.array([kind not in ("", "skipped") for kind in kinds], bool)
        ends = ending[arrow.numpy(errors.indices)][has] & inside
        self.ended[ids[ends]] = step[ends] + 1

    def figures(self) -> dict | None:
        seen = self.seen
        sessions = int(seen.sum())
        if not sessions:
            return None
        completed = seen & ~self.failed
        durations = np.sort((self.end - self.start)[completed])
        n = len(durations)
        picked = {}
        if n:
            fractions = np.array(list(DURATION_QUANTILES.values()))
            ranks = nearest_rank_ranks(np.full(len(fractions), n), fractions)
            picked = dict(zip(DURATION_QUANTILES, (durations[ranks] / MS).tolist(), strict=True))
        cut = seen & self.failed & (self.ended == 0)
        return {
            "sessions": sessions,
            "completed": int(completed.sum()),
            "session_availability": int(completed.sum()) / sessions,
            "cut": int(cut.sum()),
            "duration": {name: picked.get(name) for name in DURATION_QUANTILES},
            "funnel": [
                {
                    "step": k,
                    "reached": int((self.reached[k] & seen).sum()),
                    "ended": int(((self.ended == k + 1) & seen).sum()),
                }
                for k in range(self.steps)
            ],
        }


def frame_figures(frame: pd.DataFrame, steps: int = 0) -> dict | None:
    """``session_figures`` of rows loaded (``analysis.load``): the same figures."""
    counted = _Sessions(steps)
    names = [name for name in COLUMNS if name in frame]
    if len(names) == len(COLUMNS) and len(frame):
        table = pa.Table.from_pandas(frame[names], preserve_index=False)
        for batch in table.to_batches():
            counted.add(batch)
    return counted.figures()


def session_figures(shards: Sequence[Shard], steps: int) -> dict | None:
    """A session target's sessions over its shards (``steps``: its steps, as run.json
    names them; for a python flow, the most steps a session made): ``sessions``,
    ``completed``, ``session_availability``, ``cut``, the completed journeys'
    ``duration`` percentiles (ms, nearest rank, None when none completed), and the
    ``funnel``: per step, the sessions with an ok row there and those that ended there.
    None when no row has a session."""
    counted = _Sessions(steps)
    for shard in shards:
        if has_column(shard, "session"):
            for batch in _batches(shard, COLUMNS):
                counted.add(batch)
    return counted.figures()
