"""Exact nearest-rank selection per group, in two chunked passes and no full copy.

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
MANTISSA_BITS = 7  # buckets per octave: 2**7, each under 1% wide
MAX_BINS = 1 << 22  # fewer buckets per octave (down to 4) when groups are many


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
