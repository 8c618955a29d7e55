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


# --- HTTP/2 to the dependency (h2c) ---------------------------------------------------------


def _h2_calls(url: str, paths: list[str], connections: int, timeout_s: float) -> list[tuple]:
    """Each path's (status, Ending name, reset code or -1), sent at once over HTTP/2."""
    import asyncio

    from blastradius.workers.client import PreparedRequest
    from blastradius.workers.http2 import Http2Client

    async def main() -> list[tuple]:
        done: dict[int, tuple] = {}

        def on_done(i, status, _bytes, ending, _kept, phases) -> None:
            done[i] = (status, ending.name, -1 if phases is None else phases[6])

        client = Http2Client(connections, 1000, timeout_s, on_done)
        for i, path in enumerate(paths):
            client.send(PreparedRequest.from_url(url + path), i)
        while len(done) < len(paths):
            await asyncio.sleep(0.01)
        client.close()
        return [done[i] for i in range(len(paths))]

    return asyncio.run(main())


def test_the_dependency_speaks_h2c_on_its_port_with_at_most_100_streams_a_connection():
    with launch.start("dependency", ["--latency", "50,1s"]) as dependency:
        paths = ["/endpoint/1"] * 120 + ["/endpoint/0", "/healthz", "/endpoint/7", "/stats"]
        calls = _h2_calls(dependency.url, paths, connections=1, timeout_s=0.5)
        # The slow endpoint's 100 streams hold the one connection: the 20 above its
        # limit, and all after them, wait in line and are never sent.
        assert calls[:100] == [(0, "DEADLINE", -1)] * 100
        assert {call[1] for call in calls[100:]} <= {"NOT_SENT", "DEADLINE"}
        stats = requests.get(f"{dependency.url}/stats", timeout=10).json()
        assert stats["peak_in_flight"] == 100  # its SETTINGS_MAX_CONCURRENT_STREAMS
        assert stats["in_flight"] == 0  # each stream reset at its deadline was let go
        quick = _h2_calls(dependency.url, paths[120:], connections=1, timeout_s=5)
        assert quick == [(200, "RESPONSE", -1), (200, "RESPONSE", -1)] + [(404, "RESPONSE", -1)] * 2
        assert requests.get(f"{dependency.url}/endpoint/0", timeout=10).status_code == 200


def test_over_http2_one_connection_of_the_async_target_is_a_pool_of_100():
    """The slow endpoint's calls take the connection's 100 streams; a healthy call then
    waits for a stream, as it would for a pooled connection over HTTP/1.1."""
    with launch.start("dependency", ["--latency", "10,4s"]) as dependency:
        args = ["--dependency", dependency.url, "--dependency-http2", "--max-connections", "1"]
        with launch.start("async", args) as target:
            assert requests.get(f"{target.url}/call/0", timeout=10).status_code == 200
            calls = _call_in_background(f"{target.url}/call/1", 100)
            wait_for(
                lambda: requests.get(f"{dependency.url}/stats", timeout=10).json(),
                lambda stats: stats["in_flight"] == 100,
            )
            with pytest.raises(requests.exceptions.ReadTimeout):
                requests.get(f"{target.url}/call/0", timeout=1.0)  # waits for a stream
            held = requests.get(f"{dependency.url}/stats", timeout=10).json()
            stats = requests.get(f"{target.url}/stats", timeout=10).json()
            for call in calls:
                call.join()
            after = requests.get(f"{target.url}/call/0", timeout=10)
    assert held["in_flight"] == 100 and held["requests"] == 101  # the healthy call: not sent
    assert stats["dependency_http"] == "2" and stats["max_connections"] == 1
    assert after.status_code == 200


def test_the_dependencys_port_tells_h2c_from_http1_by_the_first_bytes_however_they_come():
    """A preface in two writes is still HTTP/2; an HTTP/1.0 request shorter than the
    preface is still answered in HTTP/1.1 (not held waiting for more bytes)."""
    from h2.connection import H2Connection

    with launch.start("dependency", ["--latency", "1"]) as dependency:
        host, port = dependency.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            h2 = H2Connection()
            h2.initiate_connection()
            preface = h2.data_to_send()
            sock.sendall(preface[:10])
            time.sleep(0.2)  # the server has the first part alone
            sock.sendall(preface[10:])
            first = sock.recv(9)
            assert len(first) == 9 and first[3] == 4  # a SETTINGS frame: HTTP/2
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            request = b"GET / HTTP/1.0\r\n\r\n"
            assert len(request) < 24
            sock.sendall(request)
            assert sock.recv(12).startswith(b"HTTP/1.")


def test_the_dependencys_h2c_sends_a_body_as_the_clients_window_allows():
    """A client with an 8-byte window gets the body in pieces of at most 8, each sent
    once the window is opened again (never an empty frame while it waits)."""
    import json

    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import DataReceived, StreamEnded
    from h2.settings import SettingCodes, Settings

    with launch.start("dependency", ["--latency", "1"]) as dependency:
        host, port = dependency.url.removeprefix("http://").split(":")
        client = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        client.local_settings = Settings(
            client=True, initial_values={SettingCodes.INITIAL_WINDOW_SIZE: 8}
        )
        client.initiate_connection()
        request = [(":method", "GET"), (":scheme", "http"), (":authority", host)]
        client.send_headers(1, [*request, (":path", "/endpoint/0")], end_stream=True)
        pieces: list[bytes] = []
        ended = False
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(client.data_to_send())
            while not ended:
                data = sock.recv(65536)
                assert data, "closed before the body was whole"
                for event in client.receive_data(data):
                    if isinstance(event, DataReceived):
                        pieces.append(event.data)
                        client.acknowledge_received_data(event.flow_controlled_length, 1)
                    ended = ended or isinstance(event, StreamEnded)
                sock.sendall(client.data_to_send())
    assert json.loads(b"".join(pieces))["endpoint"] == 0
    assert len(pieces) >= 3 and all(0 < len(piece) <= 8 for piece in pieces)
