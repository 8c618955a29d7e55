"""The target is killed mid-run and started again on the same port: the generator keeps
its schedule, failures are `connect`/`reset` rows during the gap only, and the
availability timeline shows the hole."""

import socket
import threading
import time

import pandas as pd
import pyarrow as pa
from waits import wait_for

from blastradius.analysis import timeline
from blastradius.analysis.load import to_frame
from blastradius.cluster import launch
from blastradius.workers.generator import Share, run_share
from blastradius.workers.schedule import Schedule

S, MS = 1_000_000_000, 1_000_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_target_restarted_on_its_port_leaves_a_hole_and_nothing_else():
    port = free_port()
    args = ["--latency", "1", "--port", str(port)]
    batches: list[pa.RecordBatch] = []
    plan = Share(
        "restarted",
        (f"http://127.0.0.1:{port}/endpoint/0",),
        Schedule.constant_rate(100, duration_ns=8 * S),
        timeout_ns=500 * MS,
    )
    service = launch.start("dependency", args)
    try:
        summaries: list = []
        runner = threading.Thread(target=lambda: summaries.append(run_share(plan, batches.append)))
        runner.start()
        wait_for(lambda: sum(b.num_rows for b in batches), lambda n: n >= 150, timeout_s=30)
        killed_ns = time.time_ns()
        service.stop()
        # Down until the generator has recorded failures for it, then back on the port.
        wait_for(
            lambda: [b for b in batches if b.column("ok").false_count],
            lambda failing: len(failing) > 0,
            timeout_s=30,
        )
        service = launch.start("dependency", args)
        back_ns = time.time_ns()
        runner.join(60)
        assert not runner.is_alive()
    finally:
        service.stop()
    rows = to_frame(
        pa.Table.from_batches(batches).append_column(
            "target", pa.array(["restarted"] * sum(b.num_rows for b in batches))
        )
    )
    (summary,) = summaries
    assert len(rows) == 800 == summary.rows  # the whole schedule: it never stopped
    failed = rows[~rows["ok"]]
    assert len(failed) > 0
    assert set(failed["error"]) <= {"connect", "reset"}, failed["error"].value_counts()
    # Failures only in the gap: none due before the kill (less a deadline for the ones
    # in flight), none due after the restart was ready.
    assert failed["intended_ns"].min() >= killed_ns - plan.timeout_ns
    assert failed["intended_ns"].max() <= back_ns
    after = rows[rows["intended_ns"] > back_ns]
    assert len(after) > 100 and after["ok"].all()
    line = timeline(rows, window_ns=500 * MS)
    assert line["availability"].min() < 0.5 and line["availability"].iloc[-1] == 1.0
    hole = line[line["availability"] < 1.0]
    assert pd.Series(hole["window"]).diff().fillna(1).eq(1).all()  # one hole, not several
