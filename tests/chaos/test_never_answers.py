"""A dependency that never answers, loaded open loop: every request ends at its
deadline, requests in flight stay near rate x deadline (never grow with time), and
the generator's memory stays bounded. (At 1000 req/s for 60 s:
benchmarks/never_answers.py, figures in RELIABILITY.md.)"""

import asyncio
import threading

import psutil
import pyarrow as pa

from blastradius.cluster import launch
from blastradius.workers.generator import Generator, Share
from blastradius.workers.schedule import Schedule

S, MS = 1_000_000_000, 1_000_000


def test_requests_to_a_dependency_that_never_answers_end_at_their_deadline_bounded():
    rate, timeout_ns, seconds = 300, 500 * MS, 6
    batches: list[pa.RecordBatch] = []
    with launch.start("dependency", ["--latency", "3600s"]) as never:
        plan = Share(
            "never",
            (f"{never.url}/endpoint/0",),
            Schedule.constant_rate(rate, duration_ns=seconds * S),
            timeout_ns,
        )
        generator = Generator(plan, batches.append)
        process = psutil.Process()
        before = process.memory_info().rss
        samples: list[tuple[int, int]] = []  # (in flight, RSS growth)
        runner = threading.Thread(target=lambda: asyncio.run(generator.run()))
        runner.start()
        while runner.is_alive():
            runner.join(0.1)
            samples.append((generator.progress().in_flight, process.memory_info().rss - before))
    rows = pa.Table.from_batches(batches).to_pandas()
    assert len(rows) == rate * seconds
    assert set(rows["error"]) == {"timeout"}
    assert rows["latency_ns"].between(timeout_ns, timeout_ns + 1 * S).all()
    in_flight = max(n for n, _ in samples)
    assert rate * timeout_ns / S * 0.8 <= in_flight <= rate * timeout_ns / S * 2
    assert max(growth for _, growth in samples) < 64 * 2**20
