"""Where requests' time went, per series, from the rows' phase columns (schema v4): the
connections they used, the requests each one carried, and the nearest-rank
percentiles of opening a connection (``connect_ns``, over the requests that opened
one), its TLS handshake (``tls_ns``, over those that made one), waiting for the first
byte (``ttfb_ns``) and receiving the rest (``service_ns`` less both), over the ok
requests.

Read from a run's files a batch at a time, exact, in two passes
(``analysis.select.Selection``), as ``analysis.scan`` reads the rest. A connection's
id is its generator's index above that generator's count of connections, so the
connections used are kept as one flag per connection a generator opened: memory is
bounded by the connections, never by the rows. A shard written before schema v4 has
no phases: a series of only such shards has none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from blastradius.analysis.load import Shard, has_column
from blastradius.analysis.scan import _ints, select_one
from blastradius.analysis.select import Selection
from blastradius.analysis.stats import MS
from blastradius.workers import arrow

COLUMNS = ["ok", "conn", "proto", "connect_ns", "tls_ns", "ttfb_ns", "service_ns"]
PHASES = ("connect", "tls", "ttfb", "receive")
QUANTILES = {"p50_ms": 0.5, "p99_ms": 0.99}
_NUMBER = (1 << 32) - 1  # a connection id's low half: its count in its generator


def _values(batch: pa.RecordBatch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per phase: a batch's values and which rows they are taken over."""
    has = arrow.valid(batch.column("conn"))
    connect, tls = _ints(batch.column("connect_ns")), _ints(batch.column("tls_ns"))
    first = batch.column("ttfb_ns")
    ttfb = _ints(first)
    answered = arrow.numpy(batch.column("ok")) & has & arrow.valid(first)
    receive = np.maximum(_ints(batch.column("service_ns")) - connect - ttfb, 0)
    return {
        "connect": (connect, has & (connect > 0)),
        "tls": (tls, has & (tls > 0)),
        "ttfb": (ttfb, answered),
        "receive": (receive, answered),
    }


def _versions(proto: pa.Array) -> dict[str, int]:
    """The requests of a batch per HTTP version (``proto``, a dictionary column)."""
    if isinstance(proto, pa.ChunkedArray):
        proto = proto.combine_chunks()
    indices = proto.indices
    codes = arrow.numpy(indices)[arrow.valid(indices)]
    counts = np.bincount(codes, minlength=len(proto.dictionary)).tolist()
    return {str(v): n for v, n in zip(proto.dictionary.to_pylist(), counts, strict=True) if n}


class _Connections:
    """The connections seen: per generator, a flag per connection number."""

    def __init__(self) -> None:
        self.used: dict[int, np.ndarray] = {}
        self.requests = 0

    def add(self, conn: pa.Array) -> None:
        has = arrow.valid(conn)
        ids = arrow.numpy(conn)[has]
        self.requests += len(ids)
        for worker in np.unique(ids >> 32).tolist():
            numbers = ids[(ids >> 32) == worker] & _NUMBER
            flags = self.used.get(worker, np.zeros(0, bool))
            if numbers.max() >= len(flags):
                grown = np.zeros(max(int(numbers.max()) + 1, 2 * len(flags)), bool)
                grown[: len(flags)] = flags
                flags = self.used[worker] = grown
            flags[numbers] = True

    def count(self) -> int:
        return int(sum(int(flags.sum()) for flags in self.used.values()))


class _Tally:
    """What a series' first pass counts besides its selection: its connections, its
    requests per HTTP version, and the values each phase has."""

    def __init__(self) -> None:
        self.connections = _Connections()
        self.counts = dict.fromkeys(PHASES, 0)
        self.versions: dict[str, int] = {}

    def add(self, batch: pa.RecordBatch, values: dict) -> None:
        """Count a batch (``values``: its ``_values``)."""
        self.connections.add(batch.column("conn"))
        for version, n in _versions(batch.column("proto")).items():
            self.versions[version] = self.versions.get(version, 0) + n
        for phase, (_, where) in values.items():
            self.counts[phase] += int(where.sum())


def phase_figures(
    shards: Sequence[Shard], series: Callable[[Shard], str]
) -> dict[str, dict | None]:
    """Per series: ``connections`` used, ``requests_per_connection`` (of the requests
    that had one), ``http`` (those requests per HTTP version, ``{"1.1": n, "2": m}``,
    the versions used only), ``opened`` (requests that waited for a connection to open)
    and ``tls_handshakes``, and ``connect``, ``tls``, ``ttfb``, ``receive``: each
    ``{p50_ms, p99_ms}`` (None without values). None for a series none of whose rows
    had a connection (or whose shards have no phase columns)."""
    labels = sorted({series(shard) for shard in shards})
    found: dict[str, dict | None] = {}
    for label in labels:
        mine = [shard for shard in shards if series(shard) == label and has_column(shard, "conn")]
        if not mine:
            found[label] = None
            continue
        tally = _Tally()
        picked = select_one(
            mine, COLUMNS, _values, Selection(1, dict.fromkeys(PHASES, QUANTILES)), tally.add
        )
        connections, counts, versions = tally.connections, tally.counts, tally.versions
        if not connections.requests:  # no row had a connection (or the rows' phases)
            found[label] = None
            continue
        used = connections.count()
        figures: dict = {
            "connections": used,
            "requests_per_connection": connections.requests / used,
            "http": dict(sorted(versions.items())),
            "opened": counts["connect"],
            "tls_handshakes": counts["tls"],
        }
        for phase in PHASES:
            row = picked[phase][0] / MS
            figures[phase] = {
                name: (None if not counts[phase] else float(value))
                for name, value in zip(QUANTILES, row.tolist(), strict=True)
            }
        found[label] = figures
    return found


def http_versions(figures: dict) -> str:
    """The HTTP versions a series' requests went over: ``HTTP/2``, or with more than one
    how many requests each (``HTTP/1.1 for 3, HTTP/2 for 97``)."""
    versions = figures["http"]
    if len(versions) == 1:
        return f"HTTP/{next(iter(versions))}"
    return ", ".join(f"HTTP/{version} for {n:,}" for version, n in versions.items())


def phase_line(target: str, figures: dict) -> str:
    """A series' phases in one line of words."""

    def spread(phase: str) -> str:
        p = figures[phase]
        if p["p50_ms"] is None:
            return "-"
        return f"p50 {p['p50_ms']:,.2f} ms, p99 {p['p99_ms']:,.2f} ms"

    per = figures["requests_per_connection"]
    tls = f"; TLS {spread('tls')}" if figures["tls_handshakes"] else ""
    return (
        f"{target}, where the time went: {figures['connections']:,} connections "
        f"({http_versions(figures)}, {per:,.1f} requests each); "
        f"opening one {spread('connect')} ({figures['opened']:,} opened){tls}; "
        f"first byte {spread('ttfb')}; receiving {spread('receive')}"
    )
