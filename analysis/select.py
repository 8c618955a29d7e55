"""Exact nearest-rank selection per group, in two chunked passes and no full copy: over
arrays in memory (``select_grouped``), or over batches read twice (``Selection``, for
``analysis.scan``).

For a few groups over many rows (a summary by target), gathering each group's
values and partitioning them costs several passes over memory and large
temporaries. This selects the same values with two streaming passes in chunks
that stay in cache:

1. count each (group, bucket), where a value's bucket is the top bits of
   ``float64(value - min + 1)``: monotone in the value, so buckets are ordered,
   and log-spaced (``2**MANTISSA_BITS`` per octave, fewer when there are so
   many groups that the histogram would pass ``MAX_BINS``), so each holds few values;
2. knowing from the counts which bucket holds each wanted rank, gather only the
   values of those buckets, sort them, and read each rank off its bucket's run.

The result is exactly the value numpy's ``inverted_cdf`` picks: buckets only
decide which values are looked at, never which one is chosen.
"""

from __future__ import annotations

import numpy as np

CHUNK = 1 << 18
_BITS = 10  # a Selection's buckets per octave at most (0.07% wide): few values a bucket
_MAX = 1 << 62  # values are clipped here for their bucket (never for their figure)
MANTISSA_BITS = 7  # buckets per octave: 2**7, each under 1% wide
MAX_BINS = 1 << 22  # fewer buckets per octave (down to 4) when groups are many
DRIFT = 0.002  # keep_near's allowance, as a fraction of the values, for a sample's bias
KEEP_LIMIT = 1 << 23  # values keep_near's guess may keep (with keys, 128 MiB) before it gives up


def _keys(groups: np.ndarray, values: np.ndarray, low: int, width: int, bits: int) -> np.ndarray:
    """``group * width + bucket`` of each value: its bucket's place in the histogram.

    A value's bucket is the top ``11 + bits`` bits of ``float64(value - low + 1)``:
    ordered (rounding to float is monotone), log-spaced, and 0 for ``low``.
    """
    shifted = values - (low - 1)
    key = shifted.astype(np.float64).view(np.int64)
    key >>= 52 - bits
    key -= 1023 << bits  # the bucket of float64(1.0)
    if groups.any():
        key += groups.astype(np.int64) * width
    return key


def _bits(ngroups: int, octaves: int) -> int:
    """Mantissa bits per bucket: as many as keep the histogram within ``MAX_BINS``."""
    room = MAX_BINS // max(ngroups * (octaves + 1), 1)
    return int(np.clip(room.bit_length() - 1, 2, MANTISSA_BITS))


def nearest_rank_ranks(counts: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """0-based indices of the ``fractions`` nearest-rank values among ``counts`` sorted ones.

    numpy's ``inverted_cdf`` arithmetic: virtual index ``n*q - 1``, rounded up unless
    it is whole; clipped to the values there are.
    """
    virtual = counts * fractions - 1
    below = np.floor(virtual)
    return np.clip(below + ((virtual - below) > 0), 0, counts - 1).astype(np.int64)


def _chunk_keys(
    groups: np.ndarray,
    values: np.ndarray,
    where: np.ndarray | None,
    low: int,
    width: int,
    bits: int,
    chunk: int,
):
    """Per chunk: its values, their histogram keys, and its part of ``where`` (or None)."""
    for start in range(0, len(values), chunk):
        end = start + chunk
        v = values[start:end]
        yield (
            v,
            _keys(groups[start:end], v, low, width, bits),
            (None if where is None else where[start:end]),
        )


def _count(histogram: np.ndarray, key: np.ndarray) -> None:
    """Add ``key``'s counts to ``histogram``, over the keys' own range only.

    Rows arrive roughly in time order (each generator's shards are), so a chunk's
    keys span a few windows: counting just that span keeps the work per chunk
    small however large the histogram.
    """
    if len(key):
        first = int(key.min())
        counts = np.bincount(key - first if first else key)
        histogram[first : first + len(counts)] += counts


def select_grouped(
    groups: np.ndarray,
    values: np.ndarray,
    ngroups: int,
    fractions: np.ndarray,
    where: np.ndarray | None = None,
    chunk: int = CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-rank quantiles of int64 ``values`` per group code, over rows in ``where``.

    Returns ``(picked, counts)``: ``picked[g, j]`` is group g's ``fractions[j]``
    quantile (NaN for an empty group), ``counts[g]`` its number of values. Rows
    are read ``chunk`` at a time.
    """
    fractions = np.asarray(fractions, np.float64)
    picked = np.full((ngroups, len(fractions)), np.nan)
    if not len(values) or (where is not None and not where.any()):
        return picked, np.zeros(ngroups, np.int64)
    # Bounds of all the values, selected or not: buckets need only cover the selected.
    low, high = int(values.min()), int(values.max())
    bits = _bits(ngroups, (high - low + 1).bit_length())
    width = int(_keys(np.zeros(1, np.int64), np.array([high]), low, 1, bits)[0]) + 1
    trash = ngroups * width  # the key of rows outside ``where`` in the second pass
    histogram = np.zeros(trash + 1, np.int64)
    for _, key, mask in _chunk_keys(groups, values, where, low, width, bits, chunk):
        _count(histogram, key if mask is None else key[mask])
    table = histogram[:trash].reshape(ngroups, width)
    counts = table.sum(axis=1)
    present = np.flatnonzero(counts)
    ranks = nearest_rank_ranks(counts[present, None], fractions[None, :])
    ends = np.cumsum(table[present], axis=1)
    # Per (present group, fraction): the bucket holding that rank, and the rank inside it.
    rows = np.arange(len(present))[:, None]
    bucket = np.stack(
        [np.searchsorted(e, r, side="right") for e, r in zip(ends, ranks, strict=True)]
    )
    inside = ranks - (ends[rows, bucket] - table[present[:, None], bucket])
    keys = present[:, None] * width + bucket
    wanted = np.zeros(trash + 1, bool)
    wanted[keys.ravel()] = True
    found_keys, found_values = [], []
    for v, key, mask in _chunk_keys(groups, values, where, low, width, bits, chunk):
        if mask is not None:
            np.putmask(key, ~mask, trash)
        hit = wanted[key]
        found_keys.append(key[hit])
        found_values.append(v[hit])
    found_key = np.concatenate(found_keys)
    found_value = np.concatenate(found_values)
    order = np.lexsort((found_value, found_key))
    found_key, found_value = found_key[order], found_value[order]
    picked[present] = found_value[np.searchsorted(found_key, keys) + inside]
    return picked, counts


def buckets(values: np.ndarray, bits: int = _BITS) -> np.ndarray:
    """Each value's bucket: the top ``11 + bits`` bits of ``float64(value + 1)``, less
    those of 1.0, for values clipped to ``[0, _MAX]``: ordered and log-spaced, 63 octaves
    of ``2**bits`` buckets."""
    as_float = values.astype(np.float64)  # monotone: exact below 2**53, rounded above
    np.clip(as_float, 0.0, _MAX, out=as_float)
    as_float += 1.0
    key = as_float.view(np.int64)
    key >>= 52 - bits
    key -= 1023 << bits
    return key


def first_of_buckets(keys: np.ndarray, bits: int = _BITS) -> np.ndarray:
    """The smallest int64 whose bucket is at least each of ``keys`` (the int64 minimum
    for bucket 0 and below, the maximum past the last bucket): bucket ``k`` holds
    exactly the values from its first to the next one's, excluded."""
    keys = np.asarray(keys, np.int64)
    low = np.zeros(len(keys), np.int64)
    high = np.full(len(keys), _MAX, np.int64)
    past = buckets(high, bits) < keys
    while (low < high).any():  # a binary search for every key at once: 63 steps
        middle = low + (high - low) // 2
        above = buckets(middle, bits) >= keys
        high = np.where(above, middle, high)
        low = np.where(above, low, middle + 1)
    low[keys <= 0] = np.iinfo(np.int64).min
    low[past] = np.iinfo(np.int64).max
    return low


class Selection:
    """Nearest-rank quantiles of some metrics per cell, exact, over batches seen twice:
    ``count`` every batch, then ``gather`` every batch again; ``picked`` then holds, per
    metric, ``[cell, j]``: the cell's j-th fraction (NaN for a cell without values)."""

    def __init__(self, ncells: int, metrics: dict[str, dict[str, float]]) -> None:
        # As many buckets per octave as keep the histograms within select's bound.
        room = MAX_BINS // max(ncells * 64, 1)
        self.bits = int(np.clip(room.bit_length() - 1, 2, _BITS))
        self.width = 64 << self.bits
        self.ncells = ncells
        self.fractions = {m: np.array(list(qs.values())) for m, qs in metrics.items()}
        self.histograms = {m: np.zeros(ncells * self.width, np.int64) for m in metrics}
        self.picked = {m: np.full((ncells, len(f)), np.nan) for m, f in self.fractions.items()}
        self._planned = False  # the counting pass is over: the wanted buckets are known
        self._wanted: dict[str, np.ndarray] = {}
        # Buckets whose values ``count`` keeps, once ``keep_near`` has guessed them.
        self._window: dict[str, np.ndarray] = {}
        self._missing: dict[str, np.ndarray] = {}  # wanted buckets outside the window
        self._kept = 0  # values kept by the window so far
        self._where: dict[str, tuple[np.ndarray, ...]] = {}
        self._edges: dict[tuple[str, int, bool], np.ndarray] = {}
        self.found: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def _keys(self, cells: np.ndarray | int, values: np.ndarray) -> np.ndarray:
        key = buckets(values, self.bits)
        key += cells * self.width
        return key

    def count(
        self, cells: np.ndarray | int, values: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> None:
        """Pass 1: count the batch's values (``values[metric]``: values and which rows
        count) into their cells' buckets (``cells``: each row's cell, or the one cell of
        every row)."""
        for metric, histogram in self.histograms.items():
            v, where = values[metric]
            if not where.all():
                v = v[where]
            key = self._keys(cells if isinstance(cells, int) else cells[where], v)
            if len(key):
                first = int(key.min())
                counts = np.bincount(key - first)
                histogram[first : first + len(counts)] += counts
                window = self._window.get(metric)
                if window is not None:
                    hit = window[key]
                    if hit.any():
                        self.found.setdefault(metric, []).append((key[hit], v[hit]))
                        self._kept += int(hit.sum())
                        if self._kept > KEEP_LIMIT:
                            self._keep_none()

    def _keep_none(self) -> None:
        """Give the guess up: it keeps too much (its sample was unlike the rest). Every
        wanted bucket is then missing, for a second pass over every batch."""
        self._window = {m: np.zeros(self.ncells * self.width, bool) for m in self.histograms}
        self.found.clear()

    def keep_near(self, margin: float = DRIFT) -> None:
        """From the counts so far (a sample of the batches), guess the buckets each
        wanted rank will fall in, and keep the values of those buckets from the batches
        ``count`` sees from now on. The guess spans the sample's error (five standard
        errors of the fraction) and ``margin`` more either way, and runs open-ended
        past the extreme ranks; ``plan`` says where it missed (``missing``). Past
        ``KEEP_LIMIT`` values kept, the guess is given up: everything is missing."""
        for metric, histogram in self.histograms.items():
            table = histogram.reshape(self.ncells, self.width)
            window = np.zeros(table.shape, bool)
            q = self.fractions[metric]
            for cell in np.flatnonzero(table.sum(axis=1)).tolist():
                ends = np.cumsum(table[cell])
                n = np.array(ends[-1])
                spread = 5 * np.sqrt(q * (1 - q) / n) + margin
                low, high = q - spread, q + spread
                first = np.searchsorted(ends, nearest_rank_ranks(n, low.clip(0, 1)), side="right")
                last = np.searchsorted(ends, nearest_rank_ranks(n, high.clip(0, 1)), side="right")
                first[low <= 0] = 0
                last[high >= 1] = self.width - 1
                for a, b in zip(first.tolist(), last.tolist(), strict=True):
                    window[cell, a : b + 1] = True
            self._window[metric] = window.ravel()

    @property
    def missing(self) -> bool:
        """Whether, after ``keep_near`` and the counting, some wanted bucket lies outside
        what was kept: only those need ``gather(..., missing=True)`` over every batch."""
        if not self._planned:
            self.plan()
        return any(m.any() for m in self._missing.values())

    def gather(
        self,
        cells: np.ndarray | int,
        values: dict[str, tuple[np.ndarray, np.ndarray]],
        missing: bool = False,
    ) -> None:
        """Pass 2: keep the batch's values that lie in a bucket holding a wanted rank
        (``missing``: only in those that ``keep_near`` did not keep)."""
        if not self._planned:
            self.plan()
        for metric, wanted in (self._missing if missing else self._wanted).items():
            v, where = values[metric]
            if isinstance(cells, int):  # one cell: its wanted buckets as value ranges
                edges = self._ranges(metric, cells, missing)
                hit = (np.searchsorted(edges, v, side="right") & 1).astype(bool)
                hit &= where
                if hit.any():
                    v = v[hit]
                    self.found.setdefault(metric, []).append((self._keys(cells, v), v))
                continue
            v = v[where]
            key = self._keys(cells[where], v)
            hit = wanted[key]
            if hit.any():
                self.found.setdefault(metric, []).append((key[hit], v[hit]))

    def _ranges(self, metric: str, cell: int, missing: bool) -> np.ndarray:
        """The values of ``cell``'s wanted (or ``missing``) buckets of ``metric`` as
        sorted edges: a value lies in one of those buckets exactly when an odd number of
        edges are <= it."""
        found = self._edges.get((metric, cell, missing))
        if found is None:
            buckets = (self._missing if missing else self._wanted)[metric]
            wanted = np.flatnonzero(buckets[cell * self.width : (cell + 1) * self.width])
            starts = first_of_buckets(np.concatenate([wanted, wanted + 1]), self.bits)
            low, high = starts[: len(wanted)], starts[len(wanted) :]
            joined = np.ones(len(wanted), bool)  # adjacent buckets make one range
            joined[1:] = low[1:] != high[:-1]
            ends = np.ones(len(wanted), bool)
            ends[:-1] = joined[1:]
            found = np.sort(np.concatenate([low[joined], high[ends]]))
            self._edges[metric, cell, missing] = found
        return found

    def add_counts(self, histograms: dict[str, np.ndarray]) -> None:
        """Add counts made elsewhere (another selection's ``histograms``, same cells)."""
        for metric, histogram in self.histograms.items():
            histogram += histograms[metric]

    def add_found(self, found: dict[str, list[tuple[np.ndarray, np.ndarray]]]) -> None:
        """Add values gathered elsewhere (another selection's ``found``)."""
        for metric, parts in found.items():
            self.found.setdefault(metric, []).extend(parts)

    def plan(self) -> None:
        """From the counts: each wanted rank's bucket, and its rank inside the bucket."""
        self._planned = True
        for metric, histogram in self.histograms.items():
            table = histogram.reshape(self.ncells, self.width)
            n = table.sum(axis=1)
            present = np.flatnonzero(n)
            if not len(present):
                continue
            ranks = nearest_rank_ranks(n[present, None], self.fractions[metric][None, :])
            ends = np.cumsum(table[present], axis=1)
            bucket = np.stack(
                [np.searchsorted(e, r, side="right") for e, r in zip(ends, ranks, strict=True)]
            ).reshape(len(present), len(self.fractions[metric]))
            rows = np.arange(len(present))[:, None]
            inside = ranks - (ends[rows, bucket] - table[present[:, None], bucket])
            keys = present[:, None] * self.width + bucket
            wanted = np.zeros(self.ncells * self.width, bool)
            wanted[keys.ravel()] = True
            self._wanted[metric] = wanted
            window = self._window.get(metric)
            if window is not None:
                self._missing[metric] = wanted & ~window
            self._where[metric] = (present, keys, inside)

    def finish(self) -> dict[str, np.ndarray]:
        """The picked values, once every batch was gathered."""
        if not self._planned:
            self.plan()
        for metric, (present, keys, inside) in self._where.items():
            parts = self.found.pop(metric, [])
            if not len(present) or not parts:
                continue
            key = np.concatenate([k for k, _ in parts])
            value = np.concatenate([v for _, v in parts])
            if metric in self._window:  # kept near the wanted ranks: most are not wanted
                wanted = self._wanted[metric][key]
                key, value = key[wanted], value[wanted]
            order = np.lexsort((value, key))
            key, value = key[order], value[order]
            self.picked[metric][present] = value[np.searchsorted(key, keys) + inside]
        return self.picked
