"""Targets that abuse the client: a response trickled a byte at a time, an endless
chunked body, a header block of several MB. Each request ends at its deadline or is
classified; the generator's memory stays bounded; nothing crashes."""

import socket
import threading
import time

import pandas as pd
import psutil
import pyarrow as pa
import pytest
from servers import read_request, scripted_server

from blastradius.workers.generator import Share, run_share
from blastradius.workers.schedule import Schedule

S, MS = 1_000_000_000, 1_000_000
TIMEOUT_NS = 500 * MS


def _send_forever(conn: socket.socket, head: bytes, piece: bytes, pause_s: float) -> None:
    with conn:
        if not read_request(conn):
            return
        try:
            conn.sendall(head)
            while True:
                conn.sendall(piece)
                if pause_s:
                    time.sleep(pause_s)  # the server's own pace, not a wait in the test
        except OSError:
            return  # the client gave up on it


def trickle(conn: socket.socket) -> None:
    """A byte every 50 ms: a 1,000,000-byte body that would take 14 hours."""
    _send_forever(conn, b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", b"x", 0.05)


def endless_chunks(conn: socket.socket) -> None:
    """64 KiB chunks as fast as the client reads them, never the last chunk."""
    chunk = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"
    _send_forever(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunk, 0)


def huge_headers(conn: socket.socket) -> None:
    """Header lines of 1 kB as fast as the client reads them (several MB before the
    deadline), never ended by a blank line. Sent line by line: the server, in this
    process too, holds none of it."""
    line = b"X-Filler: " + b"z" * 1000 + b"\r\n"
    _send_forever(conn, b"HTTP/1.1 200 OK\r\n", line, 0)


def run(url: str, requests: int) -> tuple[dict, pd.DataFrame, int]:
    """Run the plan; its summary, rows, and the peak growth of this process's RSS."""
    process = psutil.Process()
    before, peak = process.memory_info().rss, [0]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], process.memory_info().rss - before)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    batches: list[pa.RecordBatch] = []
    plan = Share("hostile", (url,), Schedule.constant_rate(10, requests=requests), TIMEOUT_NS)
    try:
        summary = run_share(plan, batches.append)
    finally:
        done.set()
        watcher.join()
    return summary, pa.Table.from_batches(batches).to_pandas(), peak[0]


@pytest.mark.parametrize(
    ("server", "kinds"),
    [
        (trickle, {"timeout"}),
        (endless_chunks, {"timeout"}),
        (huge_headers, {"timeout", "other"}),
    ],
    ids=["trickle", "endless-chunked", "huge-header-block"],
)
def test_a_hostile_target_is_cut_at_the_deadline_with_memory_bounded(server, kinds):
    with scripted_server(server) as (url, _):
        summary, rows, growth = run(url, requests=10)
    assert len(rows) == 10 == summary.rows
    assert set(rows["error"]) <= kinds and not rows["ok"].any()
    # Cut at the deadline (or before, when classified), never long after it: the slack
    # is for a loaded 2-core machine, where this process also runs the hostile server.
    assert (rows["latency_ns"] <= TIMEOUT_NS + 1 * S).all(), rows["latency_ns"].max()
    assert growth < 64 * 2**20, f"RSS grew {growth / 2**20:.0f} MiB"
