"""The patterns in the reference services, on loopback against a real dependency: what
a caller sees (503 at once, 504 at its deadline), what the dependency sees (the calls
retries add), and what ``/stats`` and ``/events`` say about it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pytest
import requests
from servers import scripted_server
from waits import wait_for

from blastradius.cluster import launch
from blastradius.targets.async_target import _Places as Places
from blastradius.targets.guards import Events, Line
from blastradius.targets.patterns import Shed
from blastradius.workers.generator import Share, run_share
from blastradius.workers.schedule import Schedule

S = 1_000_000_000
KINDS = ["blocking", "async"]
SLOW, FAILING = 8, 9  # endpoint 8 takes 1 s, endpoint 9 always answers 500


@pytest.fixture(scope="module")
def dependency() -> Iterator[launch.Service]:
    with launch.start("dependency", ["--latency", "50ms*8,1s,50ms", "--errors", "0*9,1"]) as dep:
        yield dep


@contextmanager
def service(kind: str, dependency: launch.Service, patterns: dict, *extra: str):
    args = ["--dependency", dependency.url, "--patterns", json.dumps(patterns), *extra]
    with launch.start(kind, args) as started:
        yield started


def get(url: str, headers: dict | None = None) -> tuple[int, str, float]:
    start = time.monotonic()
    answer = requests.get(url, headers=headers, timeout=30)
    return answer.status_code, answer.text, time.monotonic() - start


def dependency_calls(dependency: launch.Service) -> int:
    return requests.get(f"{dependency.url}/stats", timeout=10).json()["requests"]


def in_flight_at_least(dependency: launch.Service, calls: int) -> None:
    """Wait until ``calls`` calls are at the dependency (they hold their places)."""
    wait_for(
        lambda: requests.get(f"{dependency.url}/stats", timeout=10).json()["in_flight"],
        lambda n: n >= calls,
    )


def patterns_of(url: str) -> tuple[dict, list[dict]]:
    stats, events = (requests.get(f"{url}/{path}", timeout=30) for path in ("stats", "events"))
    assert (stats.status_code, events.status_code) == (200, 200)
    return stats.json()["patterns"], events.json()["events"]


def background(pool: ThreadPoolExecutor, url: str, calls: int) -> list[Future]:
    return [pool.submit(get, url) for _ in range(calls)]


@pytest.mark.parametrize("kind", KINDS)
def test_a_bulkhead_refuses_calls_past_an_endpoints_places_and_spares_the_others(kind, dependency):
    with service(kind, dependency, {"bulkhead": {"per_endpoint": 2}}) as target:
        with ThreadPoolExecutor(4) as pool:
            slow = background(pool, f"{target.url}/call/{SLOW}", 2)
            in_flight_at_least(dependency, 2)
            refused = get(f"{target.url}/call/{SLOW}")
            healthy = get(f"{target.url}/call/0")
            assert [f.result()[0] for f in slow] == [200, 200]
        assert refused[:2] == (503, f"bulkhead: endpoint {SLOW} has every place taken\n")
        assert refused[2] < 0.5 and healthy[0] == 200  # at once, while the slow calls wait
        counts, events = patterns_of(target.url)
    assert counts == {"bulkhead.rejected": 1}
    assert [(e["event"], e["endpoint"], e["count"]) for e in events] == [("rejected", SLOW, 1)]


@pytest.mark.parametrize("kind", KINDS)
def test_an_open_breaker_refuses_without_calling_the_dependency(kind, dependency):
    breaker = {"breaker": {"failures": "50%", "min_calls": 2, "open_for": "60s"}}
    with service(kind, dependency, breaker) as target:
        failed = [get(f"{target.url}/call/{FAILING}")[0] for _ in range(2)]
        before = dependency_calls(dependency)
        refused = get(f"{target.url}/call/{FAILING}")
        assert dependency_calls(dependency) == before
        assert get(f"{target.url}/call/0")[0] == 200  # endpoint 0's breaker is closed
        counts, events = patterns_of(target.url)
    assert failed == [502, 502]
    assert refused[:2] == (503, f"breaker: endpoint {FAILING} is open\n")
    assert counts == {"breaker.opened": 1, "breaker.rejected": 1}
    assert [e["event"] for e in events] == ["opened", "rejected"]


@pytest.mark.parametrize(
    ("retry", "dependency_saw", "counts"),
    [
        ({"attempts": 3}, 12, {"retry.retried": 8}),  # naive: three calls for each request
        # a budget of half the requests: 2 retries over 4 requests (one each at 2 and 4)
        ({"attempts": 3, "budget": "50%"}, 6, {"retry.retried": 2, "retry.denied": 4}),
    ],
)
@pytest.mark.parametrize("kind", KINDS)
def test_retries_multiply_the_calls_on_a_failing_endpoint_unless_a_budget_holds_them(
    kind, dependency, retry, dependency_saw, counts
):
    with service(kind, dependency, {"retry": retry}) as target:
        before = dependency_calls(dependency)
        statuses = [get(f"{target.url}/call/{FAILING}")[0] for _ in range(4)]
        assert dependency_calls(dependency) - before == dependency_saw
        assert statuses == [502] * 4
        assert patterns_of(target.url)[0] == counts


@pytest.mark.parametrize("kind", KINDS)
def test_a_propagated_deadline_stops_the_wait_and_a_passed_one_calls_nothing(kind, dependency):
    with service(kind, dependency, {"deadline": "propagate"}) as target:
        now_ms = time.time() * 1000
        cut = get(f"{target.url}/call/{SLOW}", {"X-Request-Deadline": f"{now_ms + 300:.0f}"})
        before = dependency_calls(dependency)
        gone = get(f"{target.url}/call/0", {"X-Request-Deadline": f"{now_ms - 1:.0f}"})
        assert dependency_calls(dependency) == before
        kept = get(f"{target.url}/call/0", {"X-Request-Deadline": "not a time"})
        counts, _ = patterns_of(target.url)
    assert cut[0] == 504 and 0.2 < cut[2] < 0.9  # not the 1 s the dependency takes
    assert gone[:2] == (504, "the caller's deadline has passed\n")
    assert kept[0] == 200
    assert counts == {"deadline.cut": 1, "deadline.expired": 1}


@pytest.mark.parametrize("kind", KINDS)
def test_an_adaptive_limit_refuses_past_its_limit_at_once(kind, dependency):
    limit = {"limit": {"adaptive": "aimd", "initial": 2, "max": 2, "timeout": "5s"}}
    with service(kind, dependency, limit) as t:
        with ThreadPoolExecutor(2) as pool:
            slow = background(pool, f"{t.url}/call/{SLOW}", 2)
            in_flight_at_least(dependency, 2)
            refused = get(f"{t.url}/call/0")
            assert [f.result()[0] for f in slow] == [200, 200]
        counts, events = patterns_of(t.url)
    assert refused[:2] == (503, "over the concurrency limit (2)\n") and refused[2] < 0.5
    assert counts == {"limit.rejected": 1, "limit.current": 2}
    assert [e["event"] for e in events] == ["rejected"]


def test_the_blocking_service_sheds_what_waited_too_long_for_a_thread(dependency):
    shed = {"shed": {"queue_timeout": "200ms", "lifo_when_busy": True}}
    with service("blocking", dependency, shed, "--threads", "2") as target:
        with ThreadPoolExecutor(5) as pool:
            slow = background(pool, f"{target.url}/call/{SLOW}", 2)
            in_flight_at_least(dependency, 2)  # both threads are taken for 1 s
            queued = background(pool, f"{target.url}/call/0", 3)
            answers = [f.result() for f in queued]
            assert [f.result()[0] for f in slow] == [200, 200]
        counts, events = patterns_of(target.url)
    assert [a[:2] for a in answers] == [(503, "shed: waited too long for a thread\n")] * 3
    # the three stood in line (newest first), then /stats found it empty (first in first)
    assert counts == {"shed.shed": 3, "shed.lifo": 1, "shed.fifo": 1}
    assert sum(e["count"] for e in events if e["event"] == "shed") == 3


def test_the_async_service_sheds_a_wait_for_a_connection_when_it_grows_too_long(dependency):
    shed = {"shed": {"queue_timeout": "200ms"}}
    with service("async", dependency, shed, "--max-connections", "2") as target:
        with ThreadPoolExecutor(4) as pool:
            slow = background(pool, f"{target.url}/call/{SLOW}", 2)
            in_flight_at_least(dependency, 2)
            refused = get(f"{target.url}/call/0")  # refused at 200 ms, not at 1 s
            assert [f.result()[0] for f in slow] == [200, 200]
        assert get(f"{target.url}/call/0")[0] == 200  # places given back
        counts, _ = patterns_of(target.url)
    assert refused[:2] == (503, "shed: waited too long for a connection\n")
    assert 0.15 < refused[2] < 0.9
    assert counts == {"shed.shed": 1}


@pytest.mark.parametrize(
    ("kind", "places"), [("blocking", "--threads"), ("async", "--max-connections")]
)
def test_a_wait_in_line_shorter_than_the_queue_timeout_is_served_when_a_place_frees(
    kind, places, dependency
):
    shed = {"shed": {"queue_timeout": "5s"}}
    with service(kind, dependency, shed, places, "1") as target:
        with ThreadPoolExecutor(2) as pool:
            slow = background(pool, f"{target.url}/call/{SLOW}", 1)
            in_flight_at_least(dependency, 1)  # the one place is taken for 1 s
            status, _, took = get(f"{target.url}/call/0")
            assert slow[0].result()[0] == 200
        assert (status, get(f"{target.url}/healthz")[:2]) == (200, (200, "ok\n"))
        assert [get(f"{target.url}{path}")[0] for path in ("/calls/0", "/x/0")] == [404] * 2
        counts, _ = patterns_of(target.url)
    assert took < 4.0  # served when the slow call gave its place back, not at 5 s
    assert "shed.shed" not in counts


def test_the_blocking_services_threads_wait_without_spinning_behind_their_line(dependency):
    # The line in place of gunicorn's queue: a thread with nothing to do sleeps on it.
    import psutil

    shed = {"shed": {"queue_timeout": "1s"}}
    with service("blocking", dependency, shed, "--threads", "4") as target:
        assert get(f"{target.url}/call/0")[0] == 200
        tree = psutil.Process(target.process.pid)
        processes = [tree, *tree.children(recursive=True)]

        def cpu_s() -> float:
            return sum(sum(p.cpu_times()[:2]) for p in processes)

        before = cpu_s()
        time.sleep(2.0)  # not a wait for a state: the window the CPU is measured over
        # Four threads spinning on an empty line would take most of a core (1.9 s, seen).
        assert cpu_s() - before < 0.5


class Clock:
    """An injected clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def places(size: int, clock: Clock) -> Places:
    # A queue timeout of a minute: its timers never fire here; the clock moves instead.
    return Places(size, Line(Shed(60 * S), Events(clock)))


def test_the_async_places_refuse_a_waiter_that_waited_too_long_when_a_place_frees():
    async def main() -> None:
        clock = Clock()
        pool = places(1, clock)
        assert await pool.enter()
        late = asyncio.ensure_future(pool.enter())
        await asyncio.sleep(0)  # in line
        clock.now += 60 * S + 1
        served = asyncio.ensure_future(pool.enter())
        await asyncio.sleep(0)
        pool.leave()  # the first in line waited too long: refused; the next served
        assert await asyncio.wait_for(asyncio.gather(late, served), 5) == [False, True]
        assert (pool.free, len(pool.line)) == (0, 0)
        pool.leave()
        assert pool.free == 1

    asyncio.run(main())


def test_the_async_places_are_kept_when_a_waiting_handler_is_cancelled():
    async def main() -> None:
        pool = places(1, Clock())
        assert await pool.enter()
        waiting = asyncio.ensure_future(pool.enter())
        await asyncio.sleep(0)
        waiting.cancel()  # cancelled in line: it leaves the line, takes nothing
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (pool.free, len(pool.line)) == (0, 0)
        given = asyncio.ensure_future(pool.enter())
        await asyncio.sleep(0)
        pool.leave()  # the place is given to it ...
        given.cancel()  # ... and its handler cancelled before it ran: the place comes back
        with pytest.raises(asyncio.CancelledError):
            await given
        assert (pool.free, len(pool.line)) == (1, 0)

    asyncio.run(main())


def test_the_async_places_pass_over_a_cancelled_waiter_to_the_next_in_line():
    async def main() -> None:
        pool = places(1, Clock())
        assert await pool.enter()
        gone, next_one = (asyncio.ensure_future(pool.enter()) for _ in range(2))
        await asyncio.sleep(0)
        gone.cancel()  # cancelled, and still in line until its handler runs again
        pool.leave()
        assert await asyncio.wait_for(next_one, 5)  # not left waiting
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert (pool.free, len(pool.line)) == (0, 0)

    asyncio.run(main())


def test_a_generator_sends_each_requests_deadline_when_told():
    heads: list[bytes] = []

    def answer(conn):
        while True:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            heads.append(data)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    with scripted_server(answer) as (url, _):
        schedule = Schedule.constant_rate(50, requests=5)
        share = Share("d", (url,), schedule, timeout_ns=2 * S, deadline_header=True)
        batches: list = []
        run_share(share, batches.append)
    rows = pa.Table.from_batches(batches).sort_by("seq").to_pylist()
    sent = [
        int(line.split(b": ")[1])
        for head in heads
        for line in head.split(b"\r\n")
        if line.startswith(b"X-Request-Deadline: ")
    ]
    assert len(sent) == len(rows) == 5
    # each is its request's intended send plus the timeout, in epoch ms
    assert sorted(sent) == [(r["intended_ns"] + 2 * S) // 1_000_000 for r in rows]


def test_a_run_records_what_every_pattern_did_as_the_service_counted_it(tmp_path):
    """One launched target with every pattern, through ``blastradius run``: run.json's
    events add up to the service's counts, at times from the load start, and say how many
    calls the dependency saw."""
    guarded = {
        "name": "guarded",
        "kind": "blocking",
        "threads": 8,
        "bulkhead": {"per_endpoint": 1},
        "breaker": {"failures": "50%", "min_calls": 3, "open_for": "10s"},
        "retry": {"attempts": 2, "budget": "50%"},
        "limit": {"adaptive": "aimd", "initial": 4},
        "shed": {"queue_timeout": "500ms"},
        "deadline": "propagate",
    }
    scenario = {
        "name": "patterns",
        "load": {"rate": 40, "duration": "3s", "timeout": "500ms"},
        "generators": 1,
        "dependency": {"latency": "20ms*8,2s,20ms", "errors": "0*9,1"},
        "targets": [guarded],
    }
    path = tmp_path / "patterns.yaml"
    path.write_text(json.dumps(scenario))
    result = subprocess.run(
        [sys.executable, "-m", "blastradius.cluster", "run", str(path), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    block = json.loads((run_dir / "run.json").read_text())["targets"]["guarded"]
    patterns = block["patterns"]
    assert patterns["dropped"] == 0
    added: dict[str, int] = {}
    for event in patterns["events"]:
        key = f"{event['pattern']}.{event['event']}"
        added[key] = added.get(key, 0) + event["count"]
        assert 0 <= event["at_s"] <= event.get("until_s", event["at_s"]) < 60
    counts = dict(patterns["counts"])
    assert counts.pop("limit.current") >= 1
    assert added == counts
    # endpoint 8 (2 s) is cut at each caller's 500 ms deadline and held to 1 thread, where
    # its 4 requests a second would take 2 (with 2 places, a race it may not lose); endpoint 9
    # (failing) is retried within the budget until its breaker opens
    for key in ("deadline.cut", "bulkhead.rejected", "breaker.opened", "retry.retried"):
        assert counts.get(key, 0) > 0, (key, counts)
    # every request reached the service; each was refused before any call, or called, and
    # retried within the budget
    refused = ("bulkhead.rejected", "breaker.rejected", "limit.rejected", "shed.shed")
    refused_n = sum(counts.get(key, 0) for key in (*refused, "deadline.expired"))
    assert block["dependency_calls"] == 120 - refused_n + counts["retry.retried"]
