"""Live counters of a generator, cheap enough for the per-request path.

The hot path only bumps counters; everything with a distribution (latency
p99 of the last window, send-lag p99 of the run) is computed when a batch
closes, from the batch's columns, into fixed-size log histograms. These
figures steer progress lines and the saturation warning; the exact ones are
computed later from the rows by the analysis package.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from blastradius.workers import arrow
from blastradius.workers.messages import Window
from blastradius.workers.record import ERROR_KINDS

# Bucket edges in ns: 1 us to 1000 s, about 4% apart; the first and last buckets are open.
_EDGES = np.geomspace(1e3, 1e12, 541)


class LogHistogram:
    """Counts of non-negative nanosecond values in fixed, roughly 4%-wide buckets."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(_EDGES) + 1, np.int64)

    def add(self, values_ns: np.ndarray) -> None:
        """Count each value."""
        buckets = np.searchsorted(_EDGES, values_ns, side="right")
        self.counts += np.bincount(buckets, minlength=len(self.counts))

    def quantile_ns(self, q: float) -> float | None:
        """Upper edge of the bucket holding the ``q`` quantile (None when empty)."""
        total = int(self.counts.sum())
        if total == 0:
            return None
        bucket = int(np.searchsorted(np.cumsum(self.counts), q * total, side="left"))
        return float(_EDGES[min(bucket, len(_EDGES) - 1)])


def _p99_ms(values_ns: np.ndarray) -> float | None:
    if not len(values_ns):
        return None
    return float(np.quantile(values_ns, 0.99, method="inverted_cdf")) / 1e6


class Counters:
    """What a generator has done so far, for ``progress()`` and its final summary."""

    def __init__(self) -> None:
        self.rows = 0
        self.sent = 0
        self.ok = 0
        self.by_error = [0] * len(ERROR_KINDS)
        self.send_lag = LogHistogram()
        self.window = Window.empty()

    def close_window(self, batch: pa.RecordBatch) -> None:
        """Fold a closed batch into the distributions; it becomes the last window."""
        sent, intended = batch.column("sent_ns"), batch.column("intended_ns")
        has = arrow.valid(sent)
        self.send_lag.add(np.maximum(arrow.numpy(sent)[has] - arrow.numpy(intended)[has], 0))
        ok_latency = arrow.numpy(batch.column("latency_ns"))[arrow.numpy(batch.column("ok"))]
        self.window = Window(batch.num_rows, len(ok_latency), _p99_ms(ok_latency))

    def errors(self) -> dict[str, int]:
        """Count of rows by error kind (kinds with none left out)."""
        return {kind: n for kind, n in zip(ERROR_KINDS, self.by_error, strict=True) if kind and n}

    def send_lag_p99_ms(self) -> float | None:
        """p99 send lag (sent - intended) over the run so far, from the histogram."""
        p99 = self.send_lag.quantile_ns(0.99)
        return None if p99 is None else p99 / 1e6
