"""The generator against real servers on loopback: rows, timing, back-pressure, errors."""

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from servers import scripted_server

from blastradius.cluster import launch
from blastradius.workers.generator import _TICK_NS, ClosedLoop, Generator, Share, _ticks, run_share
from blastradius.workers.schedule import Schedule

S = 1_000_000_000
MS = 1_000_000


@pytest.fixture(scope="module")
def dependency() -> Iterator[launch.Service]:
    """0: instant, 1: 1 s, 2: 2 s, 3: always HTTP 500, 4: 100 ms."""
    args = ["--latency", "0,1s,2s,0,100", "--errors", "0,0,0,1,0"]
    with launch.start("dependency", args) as service:
        yield service


@pytest.fixture(scope="module")
def async_target(dependency) -> Iterator[launch.Service]:
    with launch.start("async", ["--dependency", dependency.url]) as service:
        yield service


def run(plan: Share) -> tuple[dict, pd.DataFrame]:
    batches: list[pa.RecordBatch] = []
    summary = run_share(plan, batches.append)
    frame = pa.Table.from_batches(batches).to_pandas() if batches else pd.DataFrame()
    return summary, frame


def test_open_loop_against_the_async_target_keeps_the_schedule(async_target):
    schedule = Schedule.constant_rate(300, duration_ns=3 * S)
    plan = Share("async", (f"{async_target.url}/call/0",), schedule, timeout_ns=1 * S)
    summary, rows = run(plan)
    assert len(rows) == 900 == summary.rows == summary.ok
    assert rows["seq"].sort_values().tolist() == list(range(900))
    intended = np.sort(rows["intended_ns"].to_numpy())
    gaps = np.diff(intended)
    assert gaps.min() >= S // 300 and gaps.max() <= S // 300 + 1  # exact to the nanosecond
    lag_ms = (rows["sent_ns"] - rows["intended_ns"]) / MS
    assert lag_ms.min() >= 0
    # Sent on time: a p99 lag of a few gaps at most (loose enough for a loaded 2-core machine).
    assert np.quantile(lag_ms, 0.99, method="inverted_cdf") < 25
    assert rows["ok"].all()
    assert (rows["latency_ns"] >= rows["service_ns"]).all()
    assert (rows["status"] == 200).all() and (rows["error"] == "").all()
    assert set(rows["worker"]) == {0} and set(rows["node"]) == {"local"}


def test_coordinated_omission_is_visible_and_late_requests_are_dropped(dependency):
    """In-flight cap 5, 1 s endpoint, 50 req/s for 3 s: the queue grows, latency with it."""
    schedule = Schedule.constant_rate(50, duration_ns=3 * S)
    plan = Share(
        "dep", (f"{dependency.url}/endpoint/1",), schedule, timeout_ns=2 * S, max_in_flight=5
    )
    summary, rows = run(plan)
    assert len(rows) == 150 == summary.rows
    rows = rows.sort_values("intended_ns")
    sent = rows[rows["sent_ns"].notna()]
    # Every sent request took the endpoint's 1 s at the target ...
    assert sent["service_ns"].between(0.99 * S, 1.5 * S).all()
    # ... while latency from the intended time grew with the line: 1 s, then 1.9 s, then more.
    first, second = sent["latency_ns"].iloc[:5], sent["latency_ns"].iloc[5:10]
    assert first.between(1.0 * S, 1.2 * S).all()
    assert second.between(1.8 * S, 2.0 * S).all()
    assert rows["ok"].sum() == 10
    # Answers after the deadline are failures, their status kept.
    late = sent[~sent["ok"]]
    assert len(late) >= 5
    assert (late["error"] == "timeout").all() and (late["status"] == 200).all()
    assert (late["latency_ns"] > 2 * S).all()
    # Requests whose deadline passed while they waited for a slot were never sent.
    dropped = rows[rows["error"] == "dropped"]
    assert len(dropped) >= 100
    assert dropped["sent_ns"].isna().all() and (dropped["status"] == 0).all()
    assert (dropped["latency_ns"] == 2 * S).all()
    assert set(rows["error"]) == {"", "dropped", "timeout"}
    assert len(sent) + len(dropped) == 150


def _reset(conn: socket.socket) -> None:
    """Read a request and close the connection without answering."""
    with conn:
        conn.recv(65536)


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/"


def test_every_failure_is_a_row_with_its_error_kind(dependency):
    with scripted_server(_reset) as (reset_url, _):
        urls = (
            _closed_port_url(),
            f"{dependency.url}/endpoint/2",
            f"{dependency.url}/endpoint/3",
            reset_url,
            f"{dependency.url}/endpoint/0",
        )
        plan = Share("mixed", urls, Schedule.constant_rate(20, requests=20), timeout_ns=1 * S)
        summary, rows = run(plan)
    assert len(rows) == 20
    by_endpoint = rows.groupby("endpoint")
    expected = {
        0: ("connect", 0),
        1: ("timeout", 0),
        2: ("http", 500),
        3: ("reset", 0),
        4: ("", 200),
    }
    for endpoint, (error, status) in expected.items():
        group = by_endpoint.get_group(endpoint)
        assert set(group["error"]) == {error}, endpoint
        assert set(group["status"]) == {status}, endpoint
    timeouts = by_endpoint.get_group(1)
    assert timeouts["latency_ns"].between(1 * S, 1 * S + 100 * MS).all()
    assert rows["ok"].sum() == 4 == summary.ok
    assert summary.errors == {"connect": 4, "timeout": 4, "http": 4, "reset": 4}


def test_closed_loop_sends_when_the_last_response_ends(dependency):
    load = ClosedLoop(concurrency=4, duration_ns=2 * S)
    plan = Share("closed", (f"{dependency.url}/endpoint/4",), load, timeout_ns=1 * S)
    summary, rows = run(plan)
    assert summary.closed_loop is True
    # Four users, 100 ms per request, for 2 s: about 80 requests.
    assert 60 <= len(rows) <= 84
    # Intended time is the send time: latency is service time, by construction.
    assert ((rows["sent_ns"] - rows["intended_ns"]).abs() < 5 * MS).all()
    assert rows["ok"].all()


def test_closed_loop_with_a_request_count_stops_there(dependency):
    load = ClosedLoop(concurrency=3, max_requests=10)
    plan = Share("closed", (f"{dependency.url}/endpoint/0",), load, timeout_ns=1 * S)
    _, rows = run(plan)
    assert sorted(rows["seq"]) == list(range(10))


def test_stop_ends_the_run_early_and_keeps_what_was_sent(async_target):
    schedule = Schedule.constant_rate(100, duration_ns=30 * S)
    plan = Share("async", (f"{async_target.url}/call/0",), schedule, timeout_ns=1 * S)
    batches: list[pa.RecordBatch] = []
    generator = Generator(plan, batches.append)

    def stop_after_100() -> None:  # on a condition, not a fixed sleep
        while generator.progress().sent < 100:
            time.sleep(0.01)
        generator.stop()

    threading.Thread(target=stop_after_100, daemon=True).start()
    start = time.monotonic()
    summary = asyncio.run(generator.run())
    assert time.monotonic() - start < 15  # of a 30 s schedule
    assert summary.stopped is True
    rows = pa.Table.from_batches(batches).to_pandas()
    assert 100 <= len(rows) <= 1000 and rows["ok"].all()
    assert sorted(rows["seq"]) == list(range(len(rows)))


def test_progress_reports_counters_while_running(async_target):
    schedule = Schedule.constant_rate(200, duration_ns=2500 * MS)
    plan = Share("async", (f"{async_target.url}/call/0",), schedule, timeout_ns=1 * S)
    generator = Generator(plan, lambda batch: None)
    seen = []
    timer = threading.Timer(2.0, lambda: seen.append(generator.progress()))
    timer.start()
    asyncio.run(generator.run())
    (progress,) = seen
    assert 300 <= progress.sent <= 450
    assert progress.window.rows >= 150 and progress.window.p99_ms < 100
    assert progress.errors == {}


def test_a_thread_per_connection_target_is_not_held_by_idle_connections(dependency):
    """The blocking target (gunicorn gthread, 4 threads) gives each new connection a thread
    for up to 5 s while it waits for a request. Connections opened before the start (once
    32 per generator) held all four, and smoke.yaml's first requests took about 1 s."""
    args = ["--dependency", dependency.url, "--threads", "4"]
    with launch.start("blocking", args) as target:
        schedule = Schedule.constant_rate(100, requests=100)
        plan = Share("blocking", (f"{target.url}/call/0",), schedule, timeout_ns=2 * S)
        _, rows = run(plan)
    assert len(rows) == 100 and rows["ok"].all()
    # Held, the first ten waited 300 ms or more each here; served at once, about 5 ms.
    first = rows.sort_values("seq")["latency_ns"].iloc[:10]
    assert first.median() < 100 * MS


def test_rows_recorded_while_the_last_batch_is_written_are_flushed_too(dependency):
    """A slow sink (a busy collector, slow storage): the run ends while a periodic flush is
    still writing, and the rows recorded meanwhile must still reach the sink."""
    batches: list[pa.RecordBatch] = []

    def slow_sink(batch: pa.RecordBatch) -> None:
        time.sleep(0.3)
        batches.append(batch)

    schedule = Schedule.constant_rate(200, requests=200)
    plan = Share(
        "slow", (f"{dependency.url}/endpoint/4",), schedule, timeout_ns=S, batch_interval_ns=S // 20
    )
    summary = run_share(plan, slow_sink)
    assert summary.rows == 200
    assert sum(batch.num_rows for batch in batches) == 200


def test_a_connection_that_never_opens_is_a_timeout_not_a_connect_error():
    """A port whose accept queue is full drops further SYNs: connecting neither succeeds
    nor fails before the deadline. That is a timeout; ``connect`` is a refusal."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = server.getsockname()[1]
        held = []
        for _ in range(4):  # fill the queue (never accepted)
            client = socket.socket()
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
            held.append(client)
        try:
            plan = Share(
                "syn-dropped",
                (f"http://127.0.0.1:{port}/",),
                Schedule.constant_rate(20, requests=5),
                timeout_ns=300 * MS,
            )
            summary, rows = run(plan)
        finally:
            for client in held:
                client.close()
    assert len(rows) == 5
    assert set(rows["error"]) == {"timeout"} and set(rows["status"]) == {0}
    assert rows["latency_ns"].between(300 * MS, 300 * MS + 200 * MS).all()
    assert summary.errors == {"timeout": 5}


@pytest.mark.parametrize(
    ("wait_ns", "ticks"),
    [(1, 1), (200_000, 1), (999_999, 1), (1_000_000, 1), (1_000_001, 2), (7_300_000, 8), (0, 1)],
)
def test_a_wait_is_whole_timer_ticks(wait_ns, ticks):
    assert _ticks(wait_ns) == ticks * _TICK_NS


def test_the_open_loop_wakes_once_a_tick_not_once_a_request(dependency, monkeypatch):
    # 3,000 req/s: a send due every 333 us, under the loop's 1 ms timer tick. A wait that
    # short fires at once (libuv rounds it to 0 ms), so waiting for each send spun the
    # loop thousands of times a second; each tick now sends what is due by then.
    sleeps = []
    sleep_until = Generator._sleep_until

    async def counted(self, mono_ns):
        sleeps.append(mono_ns)
        await sleep_until(self, mono_ns)

    monkeypatch.setattr(Generator, "_sleep_until", counted)
    schedule = Schedule.constant_rate(3000, requests=3000)
    summary, rows = run(Share("tick", (f"{dependency.url}/endpoint/0",), schedule, 5 * S))
    assert summary.rows == 3000
    lag_ms = (rows["sent_ns"] - rows["intended_ns"]) / MS
    assert lag_ms.min() >= 0  # never early
    assert len(sleeps) < 3000 / 2, len(sleeps)  # about one a tick: 1,000 in the second


def test_the_writer_thread_runs_nicer_than_the_sending_loop_whatever_its_niceness():
    from blastradius.workers.generator import _WRITER_NICE, _prepare_writer

    seen: list[int] = []

    def loop_thread() -> None:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, 3)  # as a niced worker's sending loop may be

        def writer() -> None:
            _prepare_writer()
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

        inner = threading.Thread(target=writer)
        inner.start()
        inner.join()

    outer = threading.Thread(target=loop_thread)
    outer.start()
    outer.join()
    assert seen == [3 + _WRITER_NICE]


IMPORTS_AFTER_THE_START = """
import json, sys, threading, time
from blastradius.workers.generator import Share, run_share
from blastradius.workers.schedule import Schedule

start_ns = time.time_ns() + 1_000_000_000
seen = []


class Watch:
    def find_spec(self, name, path=None, target=None):
        if time.time_ns() >= start_ns and threading.current_thread() is threading.main_thread():
            seen.append(name)
        return None


sys.meta_path.insert(0, Watch())
schedule = Schedule.constant_rate(200, requests=300)
share = Share("t", (sys.argv[1],), schedule, 1_000_000_000, start_ns=start_ns)
batches = []
run_share(share, batches.append)
print(json.dumps({"rows": sum(b.num_rows for b in batches), "imports": seen}))
"""


def test_the_sending_loop_imports_nothing_once_the_load_has_started(dependency):
    # The first batch's recording imported pandas (through pyarrow) on the sending loop,
    # 0.3 s after the start: every request due meanwhile went out that late.
    url = f"{dependency.url}/endpoint/0"
    command = [sys.executable, "-c", IMPORTS_AFTER_THE_START, url]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    found = json.loads(result.stdout.splitlines()[-1])
    assert found == {"rows": 300, "imports": []}


IDLE_CPU = """
import json, sys, time
from blastradius.workers.generator import Share, run_share
from blastradius.workers.schedule import Schedule


def cpu_s(rate):
    share = Share("t", (sys.argv[1],), Schedule.constant_rate(rate, requests=2), 1_000_000_000)
    batches = []
    before = time.thread_time()
    run_share(share, batches.append)
    return sum(b.num_rows for b in batches), time.thread_time() - before


cpu_s(1000)  # first-time costs (imports, the warm-up) paid here
rows, used = cpu_s(1 / 3)  # one now, the next 3 s later
print(json.dumps({"rows": rows, "cpu_s": used}))
"""


def test_a_generator_waiting_for_its_next_send_leaves_the_core_alone(dependency):
    # Waiting 3 s for a send costs a few timer ticks' worth of CPU, not a spinning core:
    # under 5% of it.
    command = [sys.executable, "-c", IDLE_CPU, f"{dependency.url}/endpoint/0"]
    result = subprocess.run(command, capture_output=True, text=True, check=True, timeout=120)
    found = json.loads(result.stdout.splitlines()[-1])
    assert found["rows"] == 2 and found["cpu_s"] < 0.05 * 3, found
