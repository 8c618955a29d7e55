"""Pure statistics over request rows: summaries and timelines.

Definitions (DESIGN.md): availability over a window is ok requests over the
requests whose ``intended_ns`` falls in it; dropped, errored and timed-out
requests all count against it. Percentiles are nearest-rank (numpy's
``inverted_cdf``), over ``latency_ns`` of ok requests unless said otherwise.

Grouped percentiles sort once (by group, then value) and pick ranks per group
with numpy's own ``inverted_cdf`` arithmetic, so every figure equals
``np.quantile(values, q, method="inverted_cdf")`` of that group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workers.record import ERROR_KINDS

QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99, "p999_ms": 0.999, "p9999_ms": 0.9999}
SATURATION_LAG_MS = 10.0
MS = 1e6


def rank_indices(counts: np.ndarray, q: float) -> np.ndarray:
    """Index within each group (of ``counts`` sizes, all > 0) of its ``q`` nearest-rank value.

    The same arithmetic as numpy's ``inverted_cdf``: virtual index ``n*q - 1``,
    rounded up unless it is whole.
    """
    virtual = counts * q - 1
    below = np.floor(virtual)
    index = below + ((virtual - below) > 0)
    return np.clip(index, 0, counts - 1).astype(np.int64)


def grouped_quantiles(
    groups: np.ndarray, values: np.ndarray, ngroups: int, qs: dict[str, float]
) -> dict[str, np.ndarray]:
    """Nearest-rank quantiles of ``values`` per group code (0..ngroups-1); NaN when empty."""
    order = np.lexsort((values, groups))
    sorted_values = values[order]
    counts = np.bincount(groups, minlength=ngroups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    present = counts > 0
    out = {}
    for name, q in qs.items():
        result = np.full(ngroups, np.nan)
        if present.any():
            picks = starts[present] + rank_indices(counts[present], q)
            result[present] = sorted_values[picks]
        out[name] = result
    return out


def _quantile(values: np.ndarray, q: float) -> float | None:
    if len(values) == 0:
        return None
    return float(np.quantile(values, q, method="inverted_cdf"))


def _rate(intended: np.ndarray) -> float | None:
    """Arrivals per second of a set of intended times: (n - 1) over their span."""
    if len(intended) < 2:
        return None
    span_s = (intended.max() - intended.min()) / 1e9
    return (len(intended) - 1) / span_s if span_s > 0 else None


def _lag_p99_by_worker(frame: pd.DataFrame) -> list[float]:
    sent = frame["sent_ns"].notna()
    lag = (frame.loc[sent, "sent_ns"].astype("int64") - frame.loc[sent, "intended_ns"]).to_numpy()
    workers = frame.loc[sent, "worker"].to_numpy()
    return [p for w in np.unique(workers) if (p := _quantile(lag[workers == w], 0.99)) is not None]


def summarize(frame: pd.DataFrame) -> dict:
    """The SUMMARY of one group of rows (DESIGN.md keys)."""
    n = len(frame)
    ok = frame["ok"].to_numpy(dtype=bool)
    latency = frame["latency_ns"].to_numpy()[ok].astype(np.int64)
    service = frame["service_ns"].to_numpy()[ok].astype(np.int64)
    sent = frame["sent_ns"].notna()
    lag = (frame.loc[sent, "sent_ns"].astype("int64") - frame.loc[sent, "intended_ns"]).to_numpy()
    throughput = _rate(frame["intended_ns"].to_numpy())
    availability = float(ok.sum() / n) if n else None
    errors = frame["error"].astype(str).value_counts()
    worker_lags = _lag_p99_by_worker(frame)
    summary = {
        "requests": n,
        "ok": int(ok.sum()),
        "availability": availability,
        "throughput_rps": throughput,
        "goodput_rps": None if throughput is None else throughput * availability,
    }
    for name, q in QUANTILES.items():
        value = _quantile(latency, q)
        summary[name] = None if value is None else value / MS
    summary["max_ms"] = float(latency.max()) / MS if len(latency) else None
    service_p99 = _quantile(service, 0.99)
    summary["service_p99_ms"] = None if service_p99 is None else service_p99 / MS
    summary["errors"] = {k: int(v) for k, v in errors.items() if k and k in ERROR_KINDS and v}
    lag_p99 = _quantile(lag, 0.99)
    summary["send_lag_p99_ms"] = None if lag_p99 is None else lag_p99 / MS
    summary["saturated"] = any(p / MS > SATURATION_LAG_MS for p in worker_lags)
    return summary


def summary(frame: pd.DataFrame, by: str | list[str] = "target") -> dict:
    """SUMMARY per group: ``{target: SUMMARY}``, or keyed by tuples for several columns."""
    keys = [by] if isinstance(by, str) else list(by)
    result = {}
    for key, group in frame.groupby(keys, observed=True, sort=True):
        name = key[0] if len(keys) == 1 else key
        result[name] = summarize(group)
    return result


def timeline(
    frame: pd.DataFrame, window_ns: int = 1_000_000_000, start_ns: int | None = None
) -> pd.DataFrame:
    """Per target and window of intended time: scheduled, ok, availability, goodput, p50/p90/p99.

    Windows are ``[start + k*window, start + (k+1)*window)``. ``start`` defaults to
    each target's own earliest intended time (targets run one after another). A
    window with no ok request has NaN percentiles. ``t_s`` is the window's start, in
    seconds from ``start``.
    """
    if frame.empty:
        return pd.DataFrame(
            columns=[
                "target",
                "window",
                "t_s",
                "scheduled",
                "ok",
                "availability",
                "goodput_rps",
                "p50_ms",
                "p90_ms",
                "p99_ms",
            ]
        )
    intended = frame["intended_ns"].to_numpy()
    if start_ns is None:
        origin = frame.groupby("target", observed=True)["intended_ns"].transform("min")
        origin = origin.to_numpy()
    else:
        origin = start_ns
    window = (intended - origin) // window_ns
    targets = frame["target"].astype("category")
    codes = targets.cat.codes.to_numpy().astype(np.int64)
    nwindows = int(window.max()) + 1
    cell = codes * nwindows + window  # one code per (target, window)
    ncells = len(targets.cat.categories) * nwindows
    ok = frame["ok"].to_numpy(dtype=bool)
    scheduled = np.bincount(cell, minlength=ncells)
    good = np.bincount(cell, weights=ok, minlength=ncells).astype(np.int64)
    latency = frame["latency_ns"].to_numpy()[ok].astype(np.int64)
    qs = grouped_quantiles(
        cell[ok], latency, ncells, {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99}
    )
    keep = scheduled > 0
    cells = np.flatnonzero(keep)
    result = pd.DataFrame(
        {
            "target": pd.Categorical.from_codes(cells // nwindows, targets.cat.categories),
            "window": cells % nwindows,
            "t_s": (cells % nwindows) * window_ns / 1e9,
            "scheduled": scheduled[keep],
            "ok": good[keep],
        }
    )
    result["availability"] = result["ok"] / result["scheduled"]
    result["goodput_rps"] = result["ok"] / (window_ns / 1e9)
    for name, values in qs.items():
        result[name] = values[keep] / MS
    return result
