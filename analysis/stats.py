"""Pure statistics over request rows: summaries and timelines.

Definitions (DESIGN.md): availability over a window is ok requests over the
requests whose ``intended_ns`` falls in it; dropped, errored and timed-out
requests all count against it. Percentiles are nearest-rank (numpy's
``inverted_cdf``), over ``latency_ns`` of ok requests unless said otherwise.

Grouped percentiles bucket rows by group once and select ranks per group with
numpy's own ``inverted_cdf`` arithmetic, so every figure equals
``np.quantile(values, q, method="inverted_cdf")`` of that group.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workers.record import ERROR_KINDS

QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99, "p999_ms": 0.999, "p9999_ms": 0.9999}
SATURATION_LAG_MS = 10.0
_FEW_GROUPS = 4  # up to this many, one mask per group beats bucketing every row
MS = 1e6


def grouped_quantiles(
    groups: np.ndarray, values: np.ndarray, ngroups: int, qs: dict[str, float]
) -> dict[str, np.ndarray]:
    """Nearest-rank quantiles of ``values`` per group code (0..ngroups-1); NaN when empty.

    Each group's values are gathered (by mask for a few groups, else bucketed by a
    radix sort of the codes), then its quantiles come from one ``np.partition``:
    selection, not a full sort.
    """
    counts = np.bincount(groups, minlength=ngroups)
    names, fractions = list(qs), np.array(list(qs.values()))
    present = np.flatnonzero(counts)
    picked = np.full((ngroups, len(names)), np.nan)
    ranks = _ranks(counts[present, None], fractions[None, :])
    segments = _segments(groups, values, counts, present)
    for g, segment, group_ranks in zip(present.tolist(), segments, ranks, strict=True):
        picked[g] = np.partition(segment, group_ranks)[group_ranks]
    return {name: picked[:, i] for i, name in enumerate(names)}


def _segments(groups: np.ndarray, values: np.ndarray, counts: np.ndarray, present: np.ndarray):
    """Each present group's values: by mask for a few groups, else bucketed once."""
    if len(present) <= _FEW_GROUPS:
        for g in present.tolist():
            yield values[groups == g]
        return
    codes = groups.astype(np.uint16) if len(counts) <= 1 << 16 else groups
    bucketed = values[np.argsort(codes, kind="stable")]  # radix sort for 16-bit codes
    ends = np.cumsum(counts)
    for g in present.tolist():
        yield bucketed[ends[g] - counts[g] : ends[g]]


def _ranks(n: np.ndarray | int, fractions: np.ndarray) -> np.ndarray:
    """Indices of the ``fractions`` nearest-rank values among ``n`` sorted ones.

    numpy's ``inverted_cdf`` arithmetic: virtual index ``n*q - 1``, rounded up unless
    it is whole.
    """
    virtual = n * fractions - 1
    below = np.floor(virtual)
    return np.clip(below + ((virtual - below) > 0), 0, n - 1).astype(np.int64)


def _min_max(values: np.ndarray, groups: np.ndarray, ngroups: int) -> tuple[np.ndarray, ...]:
    """Per group code: the smallest and largest value (0 for an empty group)."""
    if ngroups <= _FEW_GROUPS:
        pairs = [
            (v.min(), v.max()) if len(v := values[groups == g]) else (0, 0) for g in range(ngroups)
        ]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    spans = pd.Series(values).groupby(groups).agg(["min", "max"]).reindex(range(ngroups))
    return spans["min"].fillna(0).to_numpy(), spans["max"].fillna(0).to_numpy()


def _ints(series: pd.Series) -> np.ndarray:
    """A column of nanoseconds as int64 (nulls as 0: callers mask them out)."""
    return series.to_numpy(dtype=np.int64, na_value=0)


def _summaries(frame: pd.DataFrame, codes: np.ndarray, ngroups: int) -> list[dict]:
    """SUMMARY of each group code, computed for all groups at once."""
    ok = frame["ok"].to_numpy(dtype=bool)
    sent = frame["sent_ns"].notna().to_numpy()
    intended = frame["intended_ns"].to_numpy()
    requests = np.bincount(codes, minlength=ngroups)
    good = np.bincount(codes, weights=ok, minlength=ngroups).astype(np.int64)
    latency_q = grouped_quantiles(
        codes[ok], _ints(frame["latency_ns"])[ok], ngroups, {**QUANTILES, "max_ms": 1.0}
    )
    service_q = grouped_quantiles(
        codes[ok], _ints(frame["service_ns"])[ok], ngroups, {"service_p99_ms": 0.99}
    )
    lag = _ints(frame["sent_ns"])[sent] - intended[sent]
    lag_q = grouped_quantiles(codes[sent], lag, ngroups, {"send_lag_p99_ms": 0.99})
    workers = frame["worker"].to_numpy().astype(np.int64)[sent]
    nworkers = int(workers.max()) + 1 if len(workers) else 1
    per_worker = grouped_quantiles(
        codes[sent] * nworkers + workers, lag, ngroups * nworkers, {"p99": 0.99}
    )["p99"].reshape(ngroups, nworkers)
    first, last = _min_max(intended, codes, ngroups)
    error_codes = frame["error"].astype("category")
    kinds = list(error_codes.cat.categories)
    error_counts = np.bincount(
        codes * len(kinds) + error_codes.cat.codes.to_numpy(), minlength=ngroups * len(kinds)
    ).reshape(ngroups, len(kinds))

    def ms(values: np.ndarray, g: int) -> float | None:
        return None if np.isnan(values[g]) else float(values[g]) / MS

    result = []
    for g in range(ngroups):
        n = int(requests[g])
        span_s = (last[g] - first[g]) / 1e9 if n > 1 else 0
        throughput = (n - 1) / span_s if span_s > 0 else None
        availability = good[g] / n if n else None
        result.append(
            {
                "requests": n,
                "ok": int(good[g]),
                "availability": availability,
                "throughput_rps": throughput,
                "goodput_rps": None if throughput is None else throughput * availability,
                **{name: ms(latency_q[name], g) for name in (*QUANTILES, "max_ms")},
                "service_p99_ms": ms(service_q["service_p99_ms"], g),
                "errors": {
                    kind: int(error_counts[g, k])
                    for k, kind in enumerate(kinds)
                    if kind and kind in ERROR_KINDS and error_counts[g, k]
                },
                "send_lag_p99_ms": ms(lag_q["send_lag_p99_ms"], g),
                "saturated": bool(np.nanmax(per_worker[g], initial=0) / MS > SATURATION_LAG_MS),
            }
        )
    return result


def summarize(frame: pd.DataFrame) -> dict:
    """The SUMMARY of one group of rows (DESIGN.md keys)."""
    return _summaries(frame, np.zeros(len(frame), np.int64), 1)[0]


def summary(frame: pd.DataFrame, by: str | list[str] = "target") -> dict:
    """SUMMARY per group: ``{target: SUMMARY}``, or keyed by tuples for several columns."""
    keys = [by] if isinstance(by, str) else list(by)
    if frame.empty:
        return {}
    if len(keys) == 1:  # the common case, without hashing every row
        column = frame[keys[0]].astype("category")
        codes = column.cat.codes.to_numpy().astype(np.int64)
        labels = list(column.cat.categories)
    else:
        grouped = frame.groupby(keys, observed=True, sort=True)
        codes = grouped.ngroup().to_numpy().astype(np.int64)
        labels = list(grouped.size().index)
    summaries = _summaries(frame, codes, len(labels))
    return {label: s for label, s in zip(labels, summaries, strict=True) if s["requests"]}


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
    targets = frame["target"].astype("category")
    codes = targets.cat.codes.to_numpy().astype(np.int64)
    if start_ns is None:
        origin = _min_max(intended, codes, len(targets.cat.categories))[0][codes]
    else:
        origin = start_ns
    window = (intended - origin) // window_ns
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
