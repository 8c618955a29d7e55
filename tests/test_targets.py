"""The blocking and async targets on loopback, against a real dependency.

The essence of the project in four requests: with a 1 s dependency endpoint a
2-thread blocking target needs two rounds for four concurrent calls and even
its health check waits for a thread; the async target answers all four in one
round and stays healthy.
"""

import socket
import threading
import time

import pytest
import requests
from bursts import concurrent_calls
from waits import wait_for

from blastradius.cluster import launch

TARGETS = ["blocking_2_threads", "async_target"]


def test_blocking_target_queues_calls_and_health_checks_behind_its_threads(blocking_2_threads):
    burst = concurrent_calls(blocking_2_threads.url, 4, "/call/0")
    assert burst.statuses == (200, 200, 200, 200)
    # Calls 3 and 4 wait for a thread: two 1 s rounds.
    assert 1.95 <= burst.all_answered_s < 3.5
    # /healthz, sent 0.2 s in, waits behind the queued calls for a thread.
    assert burst.healthz_s >= 0.7


def test_async_target_answers_concurrent_calls_at_once_and_stays_healthy(async_target):
    burst = concurrent_calls(async_target.url, 4, "/call/0")
    assert burst.statuses == (200, 200, 200, 200)
    assert 0.95 <= burst.all_answered_s < 1.8
    assert burst.healthz_s < 0.5


@pytest.mark.parametrize("target", TARGETS)
def test_dependency_timeout_answers_504(target, request):
    url = request.getfixturevalue(target).url
    start = time.monotonic()
    response = requests.get(f"{url}/call/1", timeout=10)  # endpoint 1 takes 2 s; timeout 1.5 s
    elapsed = time.monotonic() - start
    assert response.status_code == 504
    assert 1.4 <= elapsed < 1.95


@pytest.mark.parametrize("target", TARGETS)
def test_dependency_error_answers_502(target, request):
    url = request.getfixturevalue(target).url
    response = requests.get(f"{url}/call/2", timeout=10)  # endpoint 2 always answers 500
    assert response.status_code == 502
    assert "500" in response.text


@pytest.mark.parametrize("target", TARGETS)
def test_unknown_paths_answer_404(target, request):
    url = request.getfixturevalue(target).url
    assert requests.get(f"{url}/call/x", timeout=10).status_code == 404
    assert requests.get(f"{url}/nothing", timeout=10).status_code == 404


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", ["blocking", "async"])
def test_unreachable_dependency_answers_502(kind):
    dependency = f"http://127.0.0.1:{_closed_port()}"
    with launch.start(kind, ["--dependency", dependency]) as target:
        response = requests.get(f"{target.url}/call/0", timeout=10)
    assert response.status_code == 502


def _call_in_background(url: str, calls: int) -> list[threading.Thread]:
    threads = [
        threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 10})
        for _ in range(calls)
    ]
    for thread in threads:
        thread.start()
    return threads


def test_blocking_stats_count_busy_threads(blocking_2_threads):
    calls = _call_in_background(f"{blocking_2_threads.url}/call/0", 1)  # holds a thread 1 s
    stats = wait_for(  # until the call holds its thread (the stats request holds the other)
        lambda: requests.get(f"{blocking_2_threads.url}/stats", timeout=10).json(),
        lambda stats: stats["busy_threads"] == 2,
    )
    for call in calls:
        call.join()
    # The stats request itself holds the other thread.
    assert stats == {"busy_threads": 2, "total_threads": 2, "queued": 0, "in_flight": 2}


def test_async_stats_count_in_flight_requests(async_target):
    calls = _call_in_background(f"{async_target.url}/call/0", 3)  # each held 1 s
    stats = wait_for(
        lambda: requests.get(f"{async_target.url}/stats", timeout=10).json(),
        lambda stats: stats["in_flight"] >= 3,
    )
    for call in calls:
        call.join()
    assert stats["in_flight"] == 3
    assert stats["max_connections"] == 0


def test_async_connection_limit_is_a_bulkhead(slow_dependency):
    """With one pooled connection, the async target too serves one call at a time."""
    args = ["--dependency", slow_dependency.url, "--max-connections", "1"]
    with launch.start("async", args) as target:
        burst = concurrent_calls(target.url, 2, "/call/0")
    assert burst.statuses == (200, 200)
    assert burst.all_answered_s >= 1.95
    assert burst.healthz_s < 0.5  # the server itself stays responsive
