"""Pure statistics over request rows: summaries and timelines.

Definitions (DESIGN.md): availability over a window is ok requests over the
requests whose ``intended_ns`` falls in it; dropped, errored and timed-out
requests all count against it. Percentiles are nearest-rank (numpy's
``inverted_cdf``), over ``latency_ns`` of ok requests unless said otherwise.

Grouped percentiles come from ``analysis.select``: two chunked passes (a
histogram of log-spaced buckets, then only the buckets holding the wanted
ranks), so every figure equals ``np.quantile(values, q, method="inverted_cdf")``
of its group without copying any group's values. Past ``_SELECT_GROUPS``
groups, each group's values are gathered by a radix sort of the codes instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from blastradius.analysis.select import CHUNK, nearest_rank_ranks, select_grouped
from blastradius.workers.record import ERROR_KINDS

if TYPE_CHECKING:
    import pandas as pd

QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99, "p999_ms": 0.999, "p9999_ms": 0.9999}
SATURATION_LAG_MS = 10.0
_SELECT_GROUPS = 1 << 16  # up to this many, chunked histogram selection (analysis.select)
MS = 1e6


def grouped_quantiles(
    groups: np.ndarray,
    values: np.ndarray,
    ngroups: int,
    qs: dict[str, float],
    where: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Nearest-rank quantiles of int64 ``values`` per group code (0..ngroups-1), over the
    rows in ``where`` (default all); NaN for a group with no such rows."""
    fractions = np.array(list(qs.values()), np.float64)
    if ngroups <= _SELECT_GROUPS:
        picked, _ = select_grouped(groups, values, ngroups, fractions, where)
    else:
        if where is not None:
            groups, values = groups[where], values[where]
        picked = _gathered_quantiles(groups, values, ngroups, fractions)
    return {name: picked[:, i] for i, name in enumerate(qs)}


def _gathered_quantiles(
    groups: np.ndarray, values: np.ndarray, ngroups: int, fractions: np.ndarray
) -> np.ndarray:
    """Quantiles per group by gathering each group's values (stable sort of the codes)
    and partitioning them: for more groups than a histogram can hold."""
    counts = bincount(groups, ngroups)
    picked = np.full((ngroups, len(fractions)), np.nan)
    ordered = values[np.argsort(groups, kind="stable")]
    ends = np.cumsum(counts)
    for g in np.flatnonzero(counts).tolist():
        segment = ordered[ends[g] - counts[g] : ends[g]]
        ranks = nearest_rank_ranks(np.array(len(segment)), fractions)
        picked[g] = np.partition(segment, ranks)[ranks]
    return picked


def _min_max(values: np.ndarray, groups: np.ndarray, ngroups: int) -> tuple[np.ndarray, ...]:
    """Per group code: the smallest and largest value (0 for an empty group)."""
    lows = np.full(ngroups, np.iinfo(np.int64).max)
    highs = np.full(ngroups, np.iinfo(np.int64).min)
    for start in range(0, len(values), CHUNK):
        g, v = groups[start : start + CHUNK], values[start : start + CHUNK]
        np.minimum.at(lows, g, v)
        np.maximum.at(highs, g, v)
    empty = bincount(groups, ngroups) == 0
    lows[empty], highs[empty] = 0, 0
    return lows, highs


def bincount(keys: np.ndarray, length: int) -> np.ndarray:
    """``np.bincount(keys, minlength=length)`` in chunks (numpy casts its input to intp)."""
    counts = np.zeros(length, np.int64)
    for start in range(0, len(keys), CHUNK):
        counts += np.bincount(keys[start : start + CHUNK], minlength=length)[:length]
    return counts


def _small_codes(codes: np.ndarray, ngroups: int) -> np.ndarray:
    """Group codes in the narrowest integer type that holds them (less memory traffic)."""
    for dtype in (np.uint8, np.uint16, np.int32):
        if ngroups <= np.iinfo(dtype).max:
            return codes.astype(dtype, copy=False)
    return codes


def _ints(series: pd.Series) -> np.ndarray:
    """A column of nanoseconds as int64 (nulls as 0: callers mask them out)."""
    return series.to_numpy(dtype=np.int64, na_value=0)


def _saturated(codes: np.ndarray, workers: np.ndarray, lag: np.ndarray, ngroups: int) -> np.ndarray:
    """Per group: whether any generator's send-lag p99 passed ``SATURATION_LAG_MS``.

    Exact without selecting: a nearest-rank p99 (index r among n sorted values)
    exceeds T exactly when at most r values are <= T, so counting suffices.
    Counted in chunks, so no temporary is as long as the rows.
    """
    if not len(lag):
        return np.zeros(ngroups, bool)
    nworkers = int(workers.max()) + 1
    cells = ngroups * nworkers
    n, within = np.zeros(cells, np.int64), np.zeros(cells, np.int64)
    for start in range(0, len(lag), CHUNK):
        end = start + CHUNK
        key = codes[start:end].astype(np.int64) * nworkers + workers[start:end]
        n += np.bincount(key, minlength=cells)
        within += np.bincount(key[lag[start:end] <= SATURATION_LAG_MS * MS], minlength=cells)
    r = nearest_rank_ranks(np.maximum(n, 1), np.array(0.99))
    late = (n > 0) & (within <= r)
    return np.asarray(late.reshape(ngroups, nworkers).any(axis=1))


@dataclass(frozen=True)
class Figures:
    """The figures a SUMMARY is made of, per group code: counts, first and last intended
    time, the percentiles (ns; NaN for none), saturation, and error counts by kind (one
    column per ``kinds``, "" among them for no error). Computed over loaded rows
    (``_summaries``) or over a run's files (``analysis.scan``), assembled by one rule."""

    requests: np.ndarray
    good: np.ndarray
    first: np.ndarray
    last: np.ndarray
    latency: dict[str, np.ndarray]  # QUANTILES and max_ms
    service_p99: np.ndarray
    send_lag_p99: np.ndarray
    saturated: np.ndarray
    error_counts: np.ndarray
    kinds: list[str]

    def summaries(self) -> list[dict]:
        """SUMMARY of each group code (DESIGN.md keys)."""
        return [self._summary(g) for g in range(len(self.requests))]

    def _summary(self, g: int) -> dict:
        def ms(values: np.ndarray) -> float | None:
            return None if np.isnan(values[g]) else float(values[g]) / MS

        n = int(self.requests[g])
        span_s = (self.last[g] - self.first[g]) / 1e9 if n > 1 else 0
        throughput = (n - 1) / span_s if span_s > 0 else None
        availability = self.good[g] / n if n else None
        return {
            "requests": n,
            "ok": int(self.good[g]),
            "availability": availability,
            "throughput_rps": throughput,
            "goodput_rps": None
            if throughput is None or availability is None
            else throughput * availability,
            **{name: ms(self.latency[name]) for name in (*QUANTILES, "max_ms")},
            "service_p99_ms": ms(self.service_p99),
            "errors": {
                kind: int(self.error_counts[g, k])
                for k, kind in enumerate(self.kinds)
                if kind and kind in ERROR_KINDS and self.error_counts[g, k]
            },
            "send_lag_p99_ms": ms(self.send_lag_p99),
            "saturated": bool(self.saturated[g]),
        }


def _summaries(frame: pd.DataFrame, codes: np.ndarray, ngroups: int) -> list[dict]:
    """SUMMARY of each group code, computed for all groups at once: one pass over the
    columns, each figure beside the arrays it shares with the others."""
    codes = _small_codes(codes, ngroups)
    ok = frame["ok"].to_numpy(dtype=bool)
    intended = frame["intended_ns"].to_numpy()
    sent = frame["sent_ns"].notna().to_numpy()
    all_sent = bool(sent.all())
    latency_q = grouped_quantiles(
        codes, _ints(frame["latency_ns"]), ngroups, {**QUANTILES, "max_ms": 1.0}, ok
    )
    service_q = grouped_quantiles(
        codes, _ints(frame["service_ns"]), ngroups, {"service_p99_ms": 0.99}, ok
    )
    lag = _ints(frame["sent_ns"]) - intended
    lag_q = grouped_quantiles(
        codes, lag, ngroups, {"send_lag_p99_ms": 0.99}, None if all_sent else sent
    )
    sent_codes, lag = (codes, lag) if all_sent else (codes[sent], lag[sent])
    workers = frame["worker"].to_numpy()
    saturated = _saturated(sent_codes, workers if all_sent else workers[sent], lag, ngroups)
    first, last = _min_max(intended, codes, ngroups)
    error_codes = frame["error"].astype("category")
    kinds = list(error_codes.cat.categories)
    error_keys: np.ndarray[Any, np.dtype[np.signedinteger[Any]]] = codes.astype(
        np.int16 if ngroups * len(kinds) < 2**15 else np.int64
    )
    error_keys *= len(kinds)
    error_keys += error_codes.cat.codes.to_numpy()
    error_counts = bincount(error_keys, ngroups * len(kinds)).reshape(ngroups, len(kinds))
    return Figures(
        requests=error_counts.sum(axis=1),  # every row has one error kind ("" for none)
        good=bincount(codes[ok], ngroups),
        first=first,
        last=last,
        latency=latency_q,
        service_p99=service_q["service_p99_ms"],
        send_lag_p99=lag_q["send_lag_p99_ms"],
        saturated=saturated,
        error_counts=error_counts,
        kinds=kinds,
    ).summaries()


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
        codes = column.cat.codes.to_numpy()
        labels = list(column.cat.categories)
    else:
        grouped = frame.groupby(keys, observed=True, sort=True)
        codes = grouped.ngroup().to_numpy().astype(np.int64)
        labels = list(grouped.size().index)
    summaries = _summaries(frame, codes, len(labels))
    return {label: s for label, s in zip(labels, summaries, strict=True) if s["requests"]}


def _cells(
    intended: np.ndarray, codes: np.ndarray, origins: np.ndarray, window_ns: int, nwindows: int
) -> np.ndarray:
    """One code per (target, window) for every row: ``target * nwindows + window``."""
    dtype = np.int32 if len(origins) * nwindows < 2**31 else np.int64
    cell = np.empty(len(intended), dtype)
    for start in range(0, len(intended), CHUNK):
        end = start + CHUNK
        c = codes[start:end].astype(np.int64)
        window = (intended[start:end] - origins[c]) // window_ns
        cell[start:end] = c * nwindows + window
    return cell


TIMELINE_QUANTILES = {"p50_ms": 0.5, "p90_ms": 0.9, "p99_ms": 0.99}


def timeline(
    frame: pd.DataFrame,
    window_ns: int = 1_000_000_000,
    start_ns: int | None = None,
    quantiles: dict[str, float] | None = None,
    service: dict[str, float] | None = None,
) -> pd.DataFrame:
    """Per target and window of intended time: scheduled, ok, availability, goodput, p50/p90/p99.

    Windows are ``[start + k*window, start + (k+1)*window)``. ``start`` defaults to
    each target's own earliest intended time (targets run one after another). A
    window with no ok request has NaN percentiles. ``t_s`` is the window's start, in
    seconds from ``start``. ``quantiles`` adds latency columns (``{"p999_ms": 0.999}``),
    ``service`` columns of ``service_ns`` (``{"service_p99_ms": 0.99}``). Over 60 lines,
    for the reason ``_summaries`` is: one pass, columns shared by every figure.
    """
    latency_qs = {**TIMELINE_QUANTILES, **(quantiles or {})}
    service_qs = service or {}
    if frame.empty:
        names = [*latency_qs, *service_qs]
        return timeline_frame([], 1, window_ns, *(np.zeros(0, np.int64),) * 2, {}, names)
    intended = frame["intended_ns"].to_numpy()
    targets = frame["target"].astype("category")
    ntargets = len(targets.cat.categories)
    codes = _small_codes(targets.cat.codes.to_numpy(), ntargets)
    firsts, lasts = _min_max(intended, codes, ntargets)
    origins = firsts if start_ns is None else np.full(ntargets, start_ns)
    nwindows = int(((lasts - origins) // window_ns).max()) + 1
    cell = _cells(intended, codes, origins, window_ns, nwindows)
    ncells = ntargets * nwindows
    ok = frame["ok"].to_numpy(dtype=bool)
    scheduled = bincount(cell, ncells)
    good = bincount(cell[ok], ncells)
    qs = grouped_quantiles(cell, _ints(frame["latency_ns"]), ncells, latency_qs, ok)
    if service_qs:
        qs.update(grouped_quantiles(cell, _ints(frame["service_ns"]), ncells, service_qs, ok))
    return timeline_frame(list(targets.cat.categories), nwindows, window_ns, scheduled, good, qs)


def timeline_frame(
    labels: list,
    nwindows: int,
    window_ns: int,
    scheduled: np.ndarray,
    good: np.ndarray,
    qs: dict[str, np.ndarray],
    names: list[str] | None = None,
) -> pd.DataFrame:
    """The timeline's table from its figures per cell (``target * nwindows + window``):
    the windows with requests, percentiles in ms (``names``: the columns, when no cell
    has any)."""
    import pandas as pd

    keep = scheduled > 0
    cells = np.flatnonzero(keep)
    result = pd.DataFrame(
        {
            "target": pd.Categorical.from_codes(cells // nwindows, pd.Index(labels)),
            "window": cells % nwindows,
            "t_s": (cells % nwindows) * window_ns / 1e9,
            "scheduled": scheduled[keep],
            "ok": good[keep],
        }
    )
    result["availability"] = result["ok"] / result["scheduled"]
    result["goodput_rps"] = result["ok"] / (window_ns / 1e9)
    for name in names or qs:
        result[name] = qs[name][keep] / MS if name in qs else np.zeros(0)
    return result


def recovery_s(
    t_s: np.ndarray, availability: np.ndarray, heal_s: float, floor: float
) -> float | None:
    """Seconds from ``heal_s`` to the start of the first window (starting at ``t_s``, in
    order) from which every later window's availability is at least ``floor``: how long
    a service took to recover once its fault healed. 0 when no window after the heal is
    below it; None when the last one is (it had not recovered when the load ended) or
    no window starts at or after the heal."""
    after = np.flatnonzero(np.asarray(t_s) >= heal_s)
    if after.size == 0:
        return None
    good = np.asarray(availability)[after] >= floor
    if not good[-1]:
        return None
    below = np.flatnonzero(~good)
    first = after[0] if below.size == 0 else after[below[-1] + 1]
    return float(t_s[first] - heal_s)
