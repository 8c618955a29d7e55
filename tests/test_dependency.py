"""The dependency on loopback: latency, errors, faults over time, 10,000 sleepers."""

import asyncio
import json
import math
import statistics
import tempfile
import time

import aiohttp
import pytest
import requests

from blastradius.cluster import launch
from blastradius.targets.dependency import parse_config


def _timed(session: requests.Session, url: str) -> tuple[int, float]:
    start = time.monotonic()
    status = session.get(url, timeout=30).status_code
    return status, time.monotonic() - start


def test_endpoint_answers_after_its_latency():
    with (
        launch.start("dependency", ["--latency", "100,300ms"]) as dependency,
        requests.Session() as session,
    ):
        fast = [_timed(session, f"{dependency.url}/endpoint/0") for _ in range(20)]
        slow = [_timed(session, f"{dependency.url}/endpoint/1") for _ in range(5)]
    assert {status for status, _ in fast + slow} == {200}
    fast_s = [elapsed for _, elapsed in fast]
    slow_s = [elapsed for _, elapsed in slow]
    # Timers fire on a millisecond clock; never early by more than that, late only by load.
    assert min(fast_s) >= 0.099 and max(fast_s) < 0.35
    assert statistics.median(fast_s) < 0.15
    assert min(slow_s) >= 0.299 and max(slow_s) < 0.55


def test_unknown_endpoint_is_404_and_health_and_stats_answer():
    # 2.5 ms: the body gives the latency in ms, fractions kept (not floored).
    with launch.start("dependency", ["--latency", "0,0,2.5"]) as dependency:
        before = requests.get(f"{dependency.url}/stats", timeout=5).json()
        for missing in ("3", "7", "x"):
            url = f"{dependency.url}/endpoint/{missing}"
            assert requests.get(url, timeout=5).status_code == 404
        assert requests.get(f"{dependency.url}/healthz", timeout=5).text == "ok\n"
        body = requests.get(f"{dependency.url}/endpoint/2", timeout=5).json()
        stats = requests.get(f"{dependency.url}/stats", timeout=5).json()
    assert before == {"in_flight": 0, "peak_in_flight": 0, "requests": 0, "endpoints": 3}
    assert body == {"endpoint": 2, "latency_ms": 2.5}
    assert stats == {"in_flight": 0, "peak_in_flight": 1, "requests": 1, "endpoints": 3}


def test_error_probability_holds_within_binomial_tolerance():
    n, p = 1000, 0.3
    with (
        launch.start("dependency", ["--latency", "0,0", "--errors", f"0,{p}"]) as dependency,
        requests.Session() as session,
    ):
        flaky = [
            session.get(f"{dependency.url}/endpoint/1", timeout=5).status_code for _ in range(n)
        ]
        healthy = [
            session.get(f"{dependency.url}/endpoint/0", timeout=5).status_code for _ in range(200)
        ]
    failures = flaky.count(500)
    assert failures + flaky.count(200) == n
    sigma = math.sqrt(n * p * (1 - p))
    assert abs(failures - n * p) < 5 * sigma  # false alarm odds below 1e-6
    assert set(healthy) == {200}


@pytest.mark.parametrize("given", ["file", "stdin"])
def test_fault_schedule_switches_latency_at_its_time(tmp_path, given):
    schedule = "- at: 1.5s\n  endpoint: 0\n  latency: 400ms\n"
    faults = tmp_path / "faults.yaml"
    faults.write_text(schedule)
    args = ["--latency", "50", "--faults", str(faults) if given == "file" else "-"]
    stdin = schedule if given == "stdin" else None  # as the driver hands a plan's schedule
    with (
        launch.start("dependency", args, stdin) as dependency,
        requests.Session() as session,
    ):
        ready = time.monotonic()
        samples = []  # (sent, seconds after readiness; latency)
        while time.monotonic() - ready < 3.0:
            sent = time.monotonic() - ready
            samples.append((sent, _timed(session, f"{dependency.url}/endpoint/0")[1]))
    # The fault clock starts before readiness, so sends up to 1.3 s are surely before it.
    before = [latency for sent, latency in samples if sent < 1.3]
    after = [latency for sent, latency in samples if sent >= 1.5]
    assert len(before) >= 5 and len(after) >= 2
    assert max(before) < 0.3
    assert min(after) >= 0.399


async def _hold_concurrent(url: str, requests_n: int) -> list[int]:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one() -> int:
            async with session.get(url) as response:
                await response.read()
                return response.status

        return await asyncio.gather(*(one() for _ in range(requests_n)))


def test_holds_10000_concurrent_sleeping_requests():
    n = 10_000
    with launch.start("dependency", ["--latency", "15s"]) as dependency:
        statuses = asyncio.run(_hold_concurrent(f"{dependency.url}/endpoint/0", n))
        stats = requests.get(f"{dependency.url}/stats", timeout=5).json()
    assert statuses.count(200) == n
    # Every request was asleep in the server at the same moment.
    assert stats["peak_in_flight"] == n


def test_post_clock_moves_the_fault_schedules_origin():
    """A fault at 1 s counts from the origin set by POST /clock (the driver's load start)."""
    import yaml

    with tempfile.TemporaryDirectory() as scratch:
        faults = f"{scratch}/faults.yaml"
        with open(faults, "w") as file:
            yaml.safe_dump([{"at": "1s", "endpoint": 0, "latency": "400ms"}], file)
        args = ["--latency", "1ms", "--faults", faults]
        with launch.start("dependency", args) as dependency, requests.Session() as session:
            url = f"{dependency.url}/endpoint/0"
            clock = f"{dependency.url}/clock"
            later = session.post(clock, params={"origin_ns": time.time_ns() + 60 * 10**9})
            assert later.status_code == 200
            assert _timed(session, url)[1] < 0.2  # the fault is a minute away
            earlier = session.post(clock, params={"origin_ns": time.time_ns() - 2 * 10**9})
            assert earlier.status_code == 200
            assert _timed(session, url)[1] >= 0.399  # 2 s after the origin: slow
            assert session.post(clock, params={"origin_ns": "soon"}).status_code == 400


@pytest.mark.parametrize(
    ("block", "problem"),
    [
        ({"latency": "200*9,30s"}, None),
        ({"latency": "lognormal(1ms, p99=5ms)*2", "errors": "0,0.5", "seed": 3}, None),
        ({"latency": "1*2", "faults": [{"at": "1s", "endpoint": "all", "errors": 1}]}, None),
        ({"latency": "1", "errors": "0,1"}, "errors: errors spec '0,1' gives 2 endpoints"),
        (
            {"latency": "1", "faults": [{"at": 0, "endpoint": 1, "latency": 2}]},
            "faults: endpoint 1",
        ),
        ({"latency": "1", "faults": [{"at": 0, "endpoint": 0, "resets": 1}]}, "faults: resets,"),
        ({"latency": "1", "seed": "x"}, "seed: expected a number"),
        ({"latency": "1", "url": "http://h"}, "url: unknown key (known here: latency,"),
        ({"errors": "0"}, "latency: missing"),
    ],
)
def test_a_config_reads_back_equal_from_its_document_or_names_the_key(block, problem):
    # How the driver hands a launched dependency its configuration: nothing lost on the way.
    if problem is not None:
        with pytest.raises(ValueError) as info:
            parse_config(block)
        assert str(info.value).startswith(problem), info.value
        return
    config = parse_config(block)
    assert parse_config(json.loads(json.dumps(config.to_json()))) == config
