"""Live metrics of a running generator, through Ray's metrics API (``ray.util.metrics``):
Ray's own export on each node serves them to Prometheus beside Ray's (names get Ray's
``ray_`` prefix, counters a ``_total`` suffix).

    blastradius_requests{target}                   requests ended (rows recorded)
    blastradius_ok{target}                         of which ok
    blastradius_errors{target, kind}               of which failed, by error kind
    blastradius_latency_seconds_bucket{target, le} ok requests' latency from the
    blastradius_latency_seconds_count{target}        intended send: a cumulative
    blastradius_latency_seconds_sum{target}          histogram (Prometheus's layout)
    blastradius_send_lag_seconds_bucket{target, le}  sent - intended, every sent request
    blastradius_send_lag_seconds_count{target}
    blastradius_send_lag_seconds_sum{target}
    blastradius_in_flight{target, worker}          requests on the wire now

They are recorded once per closed batch (about a second), on the generator's writer
thread, from the same rows that go to Parquet: never per request, so the sending loop
pays nothing. Ray's histogram takes one value per call, so the histograms are counters
with an ``le`` tag, filled from numpy bucket counts; ``histogram_quantile`` reads them
as it reads any Prometheus histogram.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from blastradius.workers import arrow

LATENCY_BOUNDS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60)
LAG_BOUNDS_S = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5)
PREFIX = "blastradius_"


def cumulative_counts(values_s: np.ndarray, bounds_s: Sequence[float]) -> list[int]:
    """How many values are at most each bound, then all of them (``le="+Inf"``)."""
    ordered = np.sort(values_s)
    counts = np.searchsorted(ordered, np.asarray(bounds_s, dtype=float), side="right")
    return [*counts.tolist(), len(ordered)]


def le_labels(bounds_s: Sequence[float]) -> list[str]:
    """The ``le`` tag of each bucket, as Prometheus writes them."""
    return [*(f"{float(b):g}" for b in bounds_s), "+Inf"]


def batch_figures(batch: pa.RecordBatch) -> dict:
    """What one closed batch adds to the metrics: counts, errors by kind, and the bucket
    counts and sums of ok latency and send lag (seconds)."""
    ok = arrow.numpy(batch.column("ok"))
    latency_s = arrow.numpy(batch.column("latency_ns"))[ok] / 1e9
    sent, intended = batch.column("sent_ns"), batch.column("intended_ns")
    has = arrow.valid(sent)
    lag_s = np.maximum(arrow.numpy(sent)[has] - arrow.numpy(intended)[has], 0) / 1e9
    error = batch.column("error")
    kinds = error.dictionary.to_pylist()
    codes = np.bincount(arrow.numpy(error.indices), minlength=len(kinds))
    return {
        "requests": batch.num_rows,
        "ok": len(latency_s),
        "errors": {kind: int(n) for kind, n in zip(kinds, codes, strict=True) if kind and n},
        "latency": (cumulative_counts(latency_s, LATENCY_BOUNDS_S), float(latency_s.sum())),
        "lag": (cumulative_counts(lag_s, LAG_BOUNDS_S), float(lag_s.sum())),
    }


class LiveMetrics:
    """One generator's metrics; ``record`` each closed batch (needs a Ray worker)."""

    def __init__(self, target: str, worker: int, in_flight: Callable[[], int]) -> None:
        from ray.util import metrics  # only where Ray runs: importing this module needs none

        tags = {"target": target}
        self.in_flight = in_flight
        self.requests = metrics.Counter(
            PREFIX + "requests", "requests ended", ("target",)
        ).set_default_tags(tags)
        self.ok = metrics.Counter(PREFIX + "ok", "requests ok", ("target",)).set_default_tags(tags)
        self.errors = metrics.Counter(
            PREFIX + "errors", "requests failed, by error kind", ("target", "kind")
        ).set_default_tags(tags)
        self.histograms = {
            name: (
                metrics.Counter(
                    PREFIX + name + "_bucket", help_, ("target", "le")
                ).set_default_tags(tags),
                metrics.Counter(PREFIX + name + "_count", help_, ("target",)).set_default_tags(
                    tags
                ),
                metrics.Counter(PREFIX + name + "_sum", help_, ("target",)).set_default_tags(tags),
                le_labels(bounds),
            )
            for name, help_, bounds in (
                (
                    "latency_seconds",
                    "ok requests' latency from the intended send",
                    LATENCY_BOUNDS_S,
                ),
                ("send_lag_seconds", "sent - intended", LAG_BOUNDS_S),
            )
        }
        self.gauge = metrics.Gauge(
            PREFIX + "in_flight", "requests on the wire", ("target", "worker")
        ).set_default_tags({**tags, "worker": str(worker)})

    def record(self, batch: pa.RecordBatch) -> None:
        """Add a closed batch's figures; set the in-flight gauge."""
        figures = batch_figures(batch)
        if figures["requests"]:
            self.requests.inc(figures["requests"])
        if figures["ok"]:
            self.ok.inc(figures["ok"])
        for kind, n in figures["errors"].items():
            self.errors.inc(n, {"kind": kind})
        for name, key in (("latency_seconds", "latency"), ("send_lag_seconds", "lag")):
            bucket, count, total, labels = self.histograms[name]
            counts, seconds = figures[key]
            for le, n in zip(labels, counts, strict=True):
                if n:
                    bucket.inc(n, {"le": le})
            if counts[-1]:
                count.inc(counts[-1])
            if seconds > 0:
                total.inc(seconds)
        self.gauge.set(self.in_flight())

    def metered(self, sink: Callable[[pa.RecordBatch], object]) -> Callable:
        """``sink``, recording each batch here first. Metrics are a view: if recording
        ever fails, it stops, and the rows go on to ``sink`` all the same."""
        enabled = True

        def record_then_write(batch: pa.RecordBatch) -> object:
            nonlocal enabled
            if enabled:
                try:
                    self.record(batch)
                except Exception:  # never a lost row for a lost metric
                    enabled = False
            return sink(batch)

        return record_then_write
