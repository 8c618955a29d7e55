"""One row per request: the Parquet schema v4 and the columnar buffer that fills it.

This module is the only definition of a request row. ``SCHEMA`` is the Arrow
schema of DESIGN.md (``target`` is the hive partition, not a column);
``RowBuffer`` collects rows column by column (no object per request) and
closes them into ``pyarrow.RecordBatch`` es, deriving ``latency_ns``,
``service_ns`` and ``ok`` once per batch rather than once per request.

Error kinds are a small closed set, the ``ErrorKind`` enum; ``workers.outcome``
is the one place request endings map onto them, and a row is ok exactly
when its kind is "" (code 0).
"""

from __future__ import annotations

import functools
from array import array

import numpy as np
import pyarrow as pa

from blastradius.workers.arrow import column, strings
from blastradius.workers.kinds import ERROR_KINDS, ErrorKind

SCHEMA_VERSION = 4  # 2: bytes_in int64 (was int32), error kind "tls"; 3: session, step;
# 4: conn, proto, connect_ns, tls_ns, ttfb_ns, reset_code
ADDED = ("session", "step", "conn", "proto", "connect_ns", "tls_ns", "ttfb_ns", "reset_code")
# (those are null in a shard of an earlier version)
PROTOCOLS = ("1.1", "2")  # ``proto``: the HTTP version a row's connection spoke
METADATA_KEY = b"blastradius.schema_version"


ERROR_CODE = {kind.value: code for code, kind in enumerate(ErrorKind)}

NULL_NS = np.iinfo(np.int64).min  # sentinel in the buffers for a time that never happened

SCHEMA = pa.schema(
    [
        pa.field("worker", pa.int32(), nullable=False),
        pa.field("node", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("seq", pa.int64(), nullable=False),
        pa.field("endpoint", pa.int32(), nullable=False),
        pa.field("intended_ns", pa.int64(), nullable=False),
        pa.field("sent_ns", pa.int64()),
        pa.field("done_ns", pa.int64()),
        pa.field("latency_ns", pa.int64()),
        pa.field("service_ns", pa.int64()),
        pa.field("status", pa.int16(), nullable=False),
        pa.field("error", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        pa.field("ok", pa.bool_(), nullable=False),
        pa.field("bytes_in", pa.int64(), nullable=False),
        pa.field("session", pa.int64()),  # a session's index in the run (null: no session)
        pa.field("step", pa.int64()),  # its step's index (run.json names them)
        pa.field("conn", pa.int64()),  # its connection's run-wide id (null: it had none)
        pa.field("proto", pa.dictionary(pa.int32(), pa.string())),  # that connection's HTTP
        pa.field("connect_ns", pa.int64()),  # opening it (TCP + TLS), 0 when reused
        pa.field("tls_ns", pa.int64()),  # of which TLS
        pa.field("ttfb_ns", pa.int64()),  # the first response byte, after the send
        pa.field("reset_code", pa.int32()),  # the HTTP/2 error code that reset its stream
    ],
    metadata={METADATA_KEY: str(SCHEMA_VERSION).encode()},
)


@functools.cache
def _error_dictionary() -> pa.Array:
    return strings(list(ERROR_KINDS))


def _nullable(values: np.ndarray) -> pa.Array:
    return column(pa.int64(), values, values != NULL_NS)


def _dictionary(
    codes: np.ndarray, words: pa.Array, valid: np.ndarray | None = None
) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(column(pa.int32(), codes, valid), words)


@functools.cache
def _protocols() -> pa.Array:
    return strings(list(PROTOCOLS))


class RowBuffer:
    """Columns of the rows recorded since the last ``close``."""

    def __init__(self, worker: int, node: str, sessions: bool = False) -> None:
        self.worker, self.node, self.sessions = worker, node, sessions
        self._clear()

    def _clear(self) -> None:
        self.seq, self.intended_ns = array("q"), array("q")
        self.sent_ns, self.done_ns = array("q"), array("q")
        self.endpoint, self.bytes_in = array("i"), array("q")
        self.status, self.error = array("h"), array("b")
        self.session = array("q")  # with ``sessions`` only; a row's step is its endpoint
        self.conn, self.connect_ns = array("q"), array("q")
        self.tls_ns, self.ttfb_ns = array("q"), array("q")
        self.proto = array("b")
        self.resets: list[tuple[int, int]] = []  # (row, code): few rows have one

    def __len__(self) -> int:
        return len(self.seq)

    def add(
        self,
        seq: int,
        endpoint: int,
        intended_ns: int,
        sent_ns: int,
        done_ns: int,
        status: int,
        error: int,
        bytes_in: int,
        session: int = -1,
        conn: int = NULL_NS,
        connect_ns: int = NULL_NS,
        tls_ns: int = NULL_NS,
        ttfb_ns: int = NULL_NS,
        proto: int = 0,
    ) -> None:
        """Record one request; ``sent_ns``/``done_ns`` may be ``NULL_NS``; ``error`` is a
        code; ``session``: its session's index (a buffer of ``sessions`` only), whose step
        is ``endpoint``; ``conn`` and the phases (``NULL_NS``: it had no connection;
        ``ttfb_ns``, no response byte); ``proto``, its place in ``PROTOCOLS``."""
        if self.sessions:
            self.session.append(session)
        self.conn.append(conn)
        self.connect_ns.append(connect_ns)
        self.tls_ns.append(tls_ns)
        self.ttfb_ns.append(ttfb_ns)
        self.proto.append(proto)
        self.seq.append(seq)
        self.endpoint.append(endpoint)
        self.intended_ns.append(intended_ns)
        self.sent_ns.append(sent_ns)
        self.done_ns.append(done_ns)
        self.status.append(status)
        self.error.append(error)
        self.bytes_in.append(bytes_in)

    def reset(self, code: int) -> None:
        """The last row's stream was reset with HTTP/2 error ``code`` (RST_STREAM or GOAWAY)."""
        self.resets.append((len(self) - 1, code))

    def close(self) -> pa.RecordBatch | None:
        """The rows so far as one record batch (None if there are none); empties the buffer."""
        n = len(self)
        if n == 0:
            return None
        intended = np.frombuffer(self.intended_ns, np.int64)
        sent = np.frombuffer(self.sent_ns, np.int64)
        done = np.frombuffer(self.done_ns, np.int64)
        status = np.frombuffer(self.status, np.int16)
        error = np.frombuffer(self.error, np.int8)
        latency = np.where(done == NULL_NS, NULL_NS, done - intended)
        service = np.where((done == NULL_NS) | (sent == NULL_NS), NULL_NS, done - sent)
        ok = error == 0  # classified once, in workers.outcome
        endpoint = np.frombuffer(self.endpoint, np.int32)
        conn = np.frombuffer(self.conn, np.int64)
        if self.sessions:
            session = column(pa.int64(), np.frombuffer(self.session, np.int64))
            step = column(pa.int64(), endpoint)
        else:
            session = step = pa.nulls(n, pa.int64())
        columns = [
            column(pa.int32(), np.full(n, self.worker, np.int32)),
            _dictionary(np.zeros(n, np.int32), strings([self.node])),
            column(pa.int64(), np.frombuffer(self.seq, np.int64)),
            column(pa.int32(), endpoint),
            column(pa.int64(), intended),
            _nullable(sent),
            _nullable(done),
            _nullable(latency),
            _nullable(service),
            column(pa.int16(), status),
            _dictionary(error, _error_dictionary()),
            column(pa.bool_(), ok),
            column(pa.int64(), np.frombuffer(self.bytes_in, np.int64)),
            session,
            step,
            _nullable(conn),
            _dictionary(np.frombuffer(self.proto, np.int8), _protocols(), conn != NULL_NS),
            _nullable(np.frombuffer(self.connect_ns, np.int64)),
            _nullable(np.frombuffer(self.tls_ns, np.int64)),
            _nullable(np.frombuffer(self.ttfb_ns, np.int64)),
            self._reset_codes(n),
        ]
        batch = pa.RecordBatch.from_arrays(columns, schema=SCHEMA)
        self._clear()
        return batch

    def _reset_codes(self, n: int) -> pa.Array:
        if not self.resets:
            return pa.nulls(n, pa.int32())
        codes, valid = np.zeros(n, np.int32), np.zeros(n, np.bool_)
        for row, code in self.resets:
            codes[row], valid[row] = code, True
        return column(pa.int32(), codes, valid)
