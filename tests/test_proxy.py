"""The fault-injecting proxy (``blastradius serve proxy``) in front of real servers: faults
per request on one keep-alive connection, delays as specified, schedules, pass-through,
streaming, resets, hangs, bandwidth, bad input and a dead upstream."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import numpy as np
import pytest
import yaml
from real_servers import uvicorn_echo
from servers import read_request, scripted_server
from waits import wait_for

from blastradius.cluster import launch
from blastradius.targets.faults import EndpointState
from blastradius.targets.proxy import (
    ProxyConfig,
    RouteStats,
    Stats,
    decide,
    parse_config,
    parse_route,
)
from blastradius.targets.spec import Fixed, parse_duration_ns
from blastradius.workers.run_record import ProxyCounts, RouteCounts

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]
S, MS = 1_000_000_000, 1_000_000


OPEN: list[http.client.HTTPConnection] = []


@pytest.fixture(autouse=True)
def _close_connections():
    yield
    while OPEN:
        OPEN.pop().close()


def connection(url: str, timeout: float = 10) -> http.client.HTTPConnection:
    """A client connection to ``url``, closed after the test."""
    parts = urlsplit(url)
    OPEN.append(http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout))
    return OPEN[-1]


def get(conn: http.client.HTTPConnection, path: str, **headers: str):
    conn.request("GET", path, headers=headers)
    response = response_of(conn)
    return response, response.read()


def response_of(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
    return conn.getresponse()


def stats(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/_blastradius/stats", timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize(
    ("text", "method", "path", "matches"),
    [
        ("/api/", "GET", "/api/orders", True),
        ("/api/", "GET", "/apix", False),
        ("POST /api/", "GET", "/api/orders", False),
        ("post /api/", "POST", "/api/orders", True),
        (r"~^/items/\d+$", "GET", "/items/42", True),
        (r"~^/items/\d+$", "GET", "/items/42/x", False),
        (r"DELETE ~/items/", "DELETE", "/v1/items/7", True),
        ("GET ~/a b$", "GET", "/x/a b", True),  # a pattern may hold a space
        ("GET /api/", "POST", "/api/x", False),
    ],
)
def test_routes_match_by_method_and_prefix_or_regex(text, method, path, matches):
    assert parse_route(text).matches(method, path) is matches


def test_one_draw_decides_a_hang_a_reset_an_error_or_nothing():
    state = EndpointState(Fixed(5 * MS), error_p=0.3, reset_p=0.2, hang_p=0.1)
    rng = random.Random(3)
    fates = [decide(state, rng).fault for _ in range(20_000)]
    shares = {kind: fates.count(kind) / len(fates) for kind in ("hang", "reset", "error", None)}
    expected = {"hang": 0.1, "reset": 0.2, "error": 0.3, None: 0.4}
    for kind, share in expected.items():
        assert shares[kind] == pytest.approx(share, abs=0.015), kind  # 4 standard errors
    assert decide(EndpointState(Fixed(5 * MS)), rng) == decide(EndpointState(Fixed(5 * MS)), rng)


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    with uvicorn_echo(tmp_path_factory.mktemp("echo") / "log.jsonl") as url:
        yield url


@pytest.fixture(scope="module")
def quick():
    """An upstream that answers at once (the dependency with latency 0, on aiohttp):
    uvicorn's echo stalls ~40 ms a response with this client (Nagle and delayed ACK)."""
    with launch.start("dependency", ["--latency", "0*3"]) as dependency:
        yield dependency.url


def test_errors_are_per_request_on_one_keep_alive_connection(quick):
    routes = ["--route", "/endpoint/1", "--route", "/endpoint/2"]
    with launch.start(
        "proxy", ["--upstream", quick, *routes, "--errors", "0,0.3", "--seed", "5"]
    ) as proxy:
        conn = connection(proxy.url)
        injected = {"/endpoint/1": 0, "/endpoint/2": 0, "/endpoint/0": 0}
        get(conn, "/endpoint/0")
        first = conn.sock
        for _ in range(500):
            for path in injected:
                response, _ = get(conn, path)
                if response.status == 503:
                    assert response.getheader("X-Blastradius-Fault") == "error 503"
                    injected[path] += 1
                else:
                    assert response.status == 200
        assert conn.sock is first  # one connection throughout
        counted = stats(proxy.url)
    # 30% of 500 (standard error 2.0%): within +-6%, 3 standard errors.
    assert injected["/endpoint/2"] / 500 == pytest.approx(0.3, abs=0.06)
    assert injected["/endpoint/1"] == injected["/endpoint/0"] == 0
    assert [r["errors"] for r in counted["routes"]] == [0, injected["/endpoint/2"]]
    assert [r["requests"] for r in counted["routes"]] == [500, 500]
    assert counted["unmatched"] == 501


def test_delays_follow_their_distribution(quick):
    # The upstream answers at once, so what the client measures is the delay plus the
    # proxy's own cost.
    spec = "lognormal(20ms,p99=80ms)"
    with launch.start("proxy", ["--upstream", quick, "--latency", spec, "--seed", "2"]) as proxy:
        conn = connection(proxy.url)
        drawn, measured = [], []
        for _ in range(300):
            start = time.perf_counter()
            response, _ = get(conn, "/endpoint/0")
            measured.append(time.perf_counter() - start)
            label = response.getheader("X-Blastradius-Fault")
            assert label.startswith("delay ")
            drawn.append(parse_duration_ns(label.removeprefix("delay ")) / S)
    drawn_a, measured_a = np.array(drawn), np.array(measured)
    # The draws: median 20 ms and p99 80 ms (300 samples: the p99 is the 3rd largest).
    assert np.median(drawn_a) == pytest.approx(0.020, rel=0.15)
    assert np.quantile(drawn_a, 0.99) == pytest.approx(0.080, rel=0.4)
    # Each was waited for, and the rest (proxy, upstream, loopback) is small.
    assert np.all(measured_a >= drawn_a)
    assert np.median(measured_a - drawn_a) < 0.02


def test_a_schedule_changes_behaviour_at_its_time_and_can_be_replaced(echo, tmp_path):
    schedule = tmp_path / "faults.yaml"
    schedule.write_text("- {at: 1s, endpoint: 0, errors: 1.0}\n")
    with launch.start("proxy", ["--upstream", echo, "--faults", str(schedule)]) as proxy:
        origin_ns = time.time_ns()
        post(f"{proxy.url}/_blastradius/clock?origin_ns={origin_ns}", b"")
        conn = connection(proxy.url)
        first, _ = get(conn, "/x")
        assert first.status == 200 or time.time_ns() - origin_ns >= S
        wait_for(lambda: get(conn, "/x")[0].status, lambda status: status == 503, timeout_s=30)
        assert time.time_ns() - origin_ns >= S
        replaced = post(f"{proxy.url}/_blastradius/faults", b"[{at: 0s, endpoint: 0, errors: 0}]")
        assert replaced == {"faults": 1}
        assert [get(conn, "/x")[0].status for _ in range(20)] == [200] * 20
        with pytest.raises(urllib.error.HTTPError) as bad:
            post(f"{proxy.url}/_blastradius/faults", b"[{at: 0s, endpoint: 3, errors: 1}]")
        assert bad.value.code == 400
        assert b"endpoint 3 does not exist" in bad.value.read()


def post(url: str, body: bytes) -> dict:
    request = urllib.request.Request(url, data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_requests_and_responses_pass_through_unchanged(echo):
    with launch.start("proxy", ["--upstream", echo]) as proxy:
        conn = connection(proxy.url)
        body = bytes(range(256)) * 40
        conn.request(
            "PUT",
            "/some/path%20x?a=1&b=%C3%A9",
            body=body,
            headers={
                "X-Custom": "v1",
                "Content-Type": "application/x-thing",
                "X-Echo-Status": "418",
            },
        )
        response = response_of(conn)
        echoed = json.loads(response.read())
    assert response.status == 418 and response.getheader("x-echo") == "yes"
    assert response.getheader("X-Blastradius-Fault") is None  # nothing was injected
    assert echoed["method"] == "PUT"
    assert echoed["raw_path"] == "/some/path%20x" and echoed["query"] == "a=1&b=%C3%A9"
    assert base64.b64decode(echoed["body"]) == body
    headers = dict((k.lower(), v) for k, v in echoed["headers"])
    assert headers["x-custom"] == "v1" and headers["content-type"] == "application/x-thing"
    assert headers["host"] == urlsplit(echo).netloc  # as nginx's proxy_pass sets it
    assert headers["content-length"] == str(len(body))


def test_a_streamed_response_is_not_buffered_whole(echo):
    with launch.start("proxy", ["--upstream", echo]) as proxy:
        conn = connection(proxy.url)
        start = time.monotonic()
        conn.request("GET", "/stream")
        response = response_of(conn)
        first = response.read1(64)
        first_at = time.monotonic() - start
        rest = response.read()
        total = time.monotonic() - start
    assert first.startswith(b"chunk0;")
    assert (first + rest) == b"chunk0;chunk1;chunk2;chunk3;chunk4;"
    # The upstream takes 1.5 s to send its five chunks; the first is here long before.
    assert total >= 1.2 and first_at < total - 0.9


def test_resets_hangs_and_bandwidth(echo):
    args = ["--upstream", echo, "--route", "/reset", "--route", "/hang", "--route", "/bytes/"]
    args += ["--resets", "1,0,0", "--hangs", "0,1,0", "--bandwidth", "0,0,100000"]
    with launch.start("proxy", args) as proxy:
        with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
            get(connection(proxy.url), "/reset")
        hung = connection(proxy.url, timeout=1.5)
        with pytest.raises(TimeoutError):
            get(hung, "/hang")
        hung.close()  # the client gives up: the proxy stops waiting too
        start = time.monotonic()
        response, body = get(connection(proxy.url), "/bytes/200000")
        elapsed = time.monotonic() - start
        assert response.getheader("X-Blastradius-Fault") == "bandwidth 100000B/s"
        assert len(body) == 200_000
        assert 1.8 <= elapsed < 4  # 2 s at 100,000 B/s
        counted = wait_for(
            lambda: stats(proxy.url), lambda s: s["in_flight"] == 0, timeout_s=30
        )  # the hung request ended when its client left
    assert [(r["resets"], r["hangs"], r["throttled"]) for r in counted["routes"]] == [
        (1, 0, 0),
        (0, 1, 0),
        (0, 0, 1),
    ]


def test_a_dead_upstream_is_a_502_and_counted():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with launch.start("proxy", ["--upstream", dead]) as proxy:
        conn = connection(proxy.url)
        statuses = [get(conn, "/x")[0] for _ in range(3)]
        assert [r.status for r in statuses] == [502] * 3
        assert statuses[0].getheader("X-Blastradius-Proxy") == "upstream unreachable"
        assert stats(proxy.url)["upstream_errors"] == 3


ROUTES_A_B_C = ["--route", "/a", "--route", "/b", "--route", "/c"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "ftp://x"], "upstream: 'ftp://x' is not an http:// or https:// URL"),
        (["--upstream", "http://h/?q=1"], "give a base URL, without query or fragment"),
        (["--upstream", "http://h", "--route", "FETCH /x"], "'FETCH' is not one of"),
        (["--upstream", "http://h", "--route", "~(unclosed"], "not a regular expression"),
        (["--upstream", "http://h", "--route", "api"], "a path prefix begins with /"),
        (["--upstream", "http://h", "--latency", "1,2"], "gives 2 endpoints, the routes make 1"),
        (
            ["--upstream", "http://h", "--latency", "1,2", *ROUTES_A_B_C],
            "gives 2 endpoints, the routes make 3",
        ),
        (["--upstream", "http://h", "--errors", "0.6", "--resets", "0.6"], "add up to more"),
        (["--upstream", "http://h", "--bandwidth", "fast"], "bandwidth spec item 1"),
        (["--upstream", "http://h", "--error-status", "200"], "not a 4xx or 5xx status"),
        (["--upstream", "http://h", "--hangs", "2"], "--hangs: hangs spec item 1 '2'"),
        (["--upstream", "http://h", "--route", "/a", "--route", "b"], "--route[1]: route 'b'"),
        (["--latency", "1"], "--upstream: missing (or give --config FILE)"),
        (["--config", "-", "--upstream", "http://h"], "--upstream: the configuration is in"),
    ],
)
def test_bad_proxy_input_is_one_line_and_exit_2(args, message):
    result = subprocess.run(
        [*BLASTRADIUS, "serve", "proxy", *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert message in result.stderr


def test_a_config_file_is_a_scenarios_proxy_entry_read_by_the_same_function(tmp_path, quick):
    # What a scenario's proxies: entry holds (without name and port) configures a proxy
    # started by hand; its errors name the file and the key, as the scenario's name the
    # entry and the key.
    entry = {"upstream": quick, "routes": ["/endpoint/0"], "errors": 1, "error_status": 429}
    config = tmp_path / "proxy.yaml"
    config.write_text(json.dumps(entry))
    with launch.start("proxy", ["--config", str(config)]) as proxy:
        conn = connection(proxy.url)
        assert [get(conn, p)[0].status for p in ("/endpoint/0", "/endpoint/1")] == [429, 200]
    config.write_text(json.dumps({**entry, "error_status": 200}))
    result = subprocess.run(
        [*BLASTRADIUS, "serve", "proxy", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"blastradius serve proxy: error: --config {config}: error_status: 200 is not a 4xx "
        "or 5xx status\n"
    )


@pytest.mark.parametrize(
    "entry",
    [
        {"upstream": "http://h:1/"},
        {"upstream": "https://h", "routes": ["/a", "POST ~^/b/\\d+$"], "latency": "5ms,1s"},
        {
            "upstream": "http://h",
            "routes": ["/a", "/b", "/c"],
            "latency": "lognormal(200ms, p99=2s)",
            "errors": "0.1*2,0",
            "resets": 0.2,
            "hangs": "0,0,0.5",
            "bandwidth": "1000,0*2",
            "error_status": 599,
            "seed": 0,
            "faults": [
                {"at": "1s", "endpoint": [2], "hangs": 0},
                {"at": 0, "endpoint": "all", "bandwidth": 5},
            ],
        },
    ],
)
def test_a_config_written_as_a_document_reads_back_equal(entry):
    # How the driver hands a launched proxy its configuration: nothing lost on the way.
    config = parse_config(entry)
    assert parse_config(json.loads(json.dumps(config.to_json()))) == config


def test_a_method_alone_is_not_a_route():
    with pytest.raises(ValueError, match="a path prefix begins with /"):
        parse_route("GET")


SLOW_ARRIVED = threading.Event()


def _slow_or_quick(conn: socket.socket) -> None:
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = conn.recv(65536)
        if not chunk:
            return
        head += chunk
    if head.startswith(b"GET /slow"):
        SLOW_ARRIVED.set()
        time.sleep(1.5)  # the slow upstream answer itself, not a wait for the test
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    conn.close()


def test_a_slow_upstream_answer_does_not_hold_up_the_next_request():
    # The proxy's pool to the upstream has no limit: each request its own connection.
    SLOW_ARRIVED.clear()
    with (
        scripted_server(_slow_or_quick) as (upstream, _),
        launch.start("proxy", ["--upstream", upstream.rstrip("/")]) as proxy,
    ):
        slow = connection(proxy.url)
        slow.request("GET", "/slow")
        assert SLOW_ARRIVED.wait(30)  # the slow request holds an upstream connection
        start = time.monotonic()
        response, _ = get(connection(proxy.url), "/quick")
        quick_s = time.monotonic() - start
        assert response_of(slow).status == 200
    assert response.status == 200 and quick_s < 1.2


def test_a_config_built_in_code_injects_503_unless_told():
    assert ProxyConfig("http://h", (), (EndpointState(Fixed(0)),)).error_status == 503


@pytest.mark.parametrize(("routes", "states"), [(2, 1), (1, 2), (0, 2)])
def test_a_config_built_in_code_has_one_state_per_endpoint(routes, states):
    with pytest.raises(ValueError, match="endpoints given, the routes make"):
        ProxyConfig(
            "http://h",
            tuple(parse_route(f"/{i}") for i in range(routes)),
            (EndpointState(Fixed(0)),) * states,
        )


@pytest.mark.parametrize(("status", "accepted"), [(399, False), (400, True), (599, True)])
def test_the_injected_status_is_a_4xx_or_5xx(status, accepted):
    entry = {"upstream": "http://h", "error_status": status}
    if accepted:
        assert parse_config(entry).error_status == status
    else:
        with pytest.raises(ValueError, match="is not a 4xx or 5xx status"):
            parse_config(entry)


def test_a_trickle_of_bandwidth_still_sends_every_byte(echo):
    # 10 B/s: slices of one byte (a twentieth of a second's worth rounds to none).
    with launch.start("proxy", ["--upstream", echo, "--bandwidth", "10"]) as proxy:
        start = time.monotonic()
        response, body = get(connection(proxy.url), "/bytes/5")
        elapsed = time.monotonic() - start
    assert len(body) == 5 and response.getheader("X-Blastradius-Fault") == "bandwidth 10B/s"
    assert elapsed >= 0.35  # the fifth byte is due 0.4 s after the first


def test_a_request_no_route_takes_passes_untouched_and_unpaced(echo):
    args = ["--upstream", echo, "--route", "/slow/", "--bandwidth", "1"]
    with launch.start("proxy", args) as proxy:
        response, body = get(connection(proxy.url, timeout=30), "/bytes/200000")
        counted = stats(proxy.url)
    assert len(body) == 200_000 and response.getheader("X-Blastradius-Fault") is None
    assert counted["unmatched"] == 1 and counted["routes"][0]["requests"] == 0


def test_hop_by_hop_headers_stop_at_the_proxy(echo):
    # RFC 9110 7.6.1: those of the list, and those the Connection header names.
    with launch.start("proxy", ["--upstream", echo]) as proxy:
        conn = connection(proxy.url)
        conn.request(
            "GET",
            "/",
            headers={
                "Proxy-Authorization": "Basic eA==",
                "Connection": "Keep-Alive, X-Secret",  # one of the list named again
                "Keep-Alive": "timeout=5",
                "X-Secret": "1",
            },
        )
        echoed = json.loads(response_of(conn).read())
    names = {k.lower() for k, _ in echoed["headers"]}
    assert not names & {"proxy-authorization", "keep-alive", "x-secret"}


def _redirect(conn: socket.socket) -> None:
    while read_request(conn):
        conn.sendall(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n")


def test_a_redirect_passes_to_the_client_unfollowed():
    with (
        scripted_server(_redirect) as (upstream, _),
        launch.start("proxy", ["--upstream", upstream.rstrip("/")]) as proxy,
    ):
        response, _ = get(connection(proxy.url), "/")
    assert response.status == 302 and response.getheader("Location") == "/elsewhere"


def test_a_reset_is_a_tcp_reset_not_a_close():
    """Read on a raw socket: a RST fails the read with ECONNRESET, while a FIN reads
    b"" (``http.client`` calls both a ``ConnectionResetError``, so it cannot tell)."""
    with (
        scripted_server(lambda conn: None) as (upstream, _),
        launch.start("proxy", ["--upstream", upstream.rstrip("/"), "--resets", "1"]) as proxy,
    ):
        split = urlsplit(proxy.url)
        with socket.create_connection((split.hostname, split.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                while sock.recv(4096):
                    pass


def _gzip_answer(conn: socket.socket) -> None:
    while read_request(conn):
        body = gzip.compress(b"x" * 1000)
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(body)}\r\n\r\n"
        conn.sendall(head.encode() + body)


def test_a_compressed_body_passes_compressed():
    with (
        scripted_server(_gzip_answer) as (upstream, _),
        launch.start("proxy", ["--upstream", upstream.rstrip("/")]) as proxy,
    ):
        response, body = get(connection(proxy.url), "/", **{"Accept-Encoding": "gzip"})
    assert response.getheader("Content-Encoding") == "gzip"
    assert gzip.decompress(body) == b"x" * 1000


def _cut_short(conn: socket.socket) -> None:
    if read_request(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"y" * 10)
        conn.close()


def test_an_upstream_that_cuts_a_body_short_cuts_the_clients_too_and_is_counted():
    with (
        scripted_server(_cut_short) as (upstream, _),
        launch.start("proxy", ["--upstream", upstream.rstrip("/")]) as proxy,
    ):
        with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
            get(connection(proxy.url), "/")
        counted = wait_for(lambda: stats(proxy.url), lambda s: s["in_flight"] == 0, timeout_s=30)
    assert counted["upstream_errors"] == 1


def test_a_schedule_that_is_not_yaml_is_a_400_naming_the_parser_s_first_line(quick):
    text = b"[{at: 1s"
    try:
        yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
    with (
        launch.start("proxy", ["--upstream", quick]) as proxy,
        pytest.raises(urllib.error.HTTPError) as bad,
    ):
        post(f"{proxy.url}/_blastradius/faults", text)
    assert bad.value.code == 400
    assert bad.value.read().decode() == f"faults: not valid YAML: {first}\n"


def test_the_stats_answer_has_the_names_run_json_keeps():
    # The proxy may not import the workers, so its counters are declared twice; held equal.
    def names(cls) -> list[str]:
        return [field.name for field in dataclasses.fields(cls)]

    assert names(RouteStats) == names(RouteCounts)
    assert names(Stats) == [*names(ProxyCounts), "in_flight"]


def test_injected_counts_add_up(quick):
    # Every request of a route is counted once, whatever happened to it.
    with launch.start(
        "proxy", ["--upstream", quick, "--errors", "0.5", "--latency", "1ms", "--seed", "9"]
    ) as proxy:
        conn = connection(proxy.url)
        statuses = [get(conn, "/endpoint/0")[0].status for _ in range(200)]
        (route,) = stats(proxy.url)["routes"]
    assert route["requests"] == 200 and route["delayed"] == 200
    assert route["errors"] == statuses.count(503) and statistics.mean(
        s == 503 for s in statuses
    ) == pytest.approx(0.5, abs=0.11)


def test_a_scenario_launches_its_proxy_and_the_run_records_what_it_injected(tmp_path, quick):
    """Your service (here: the proxy's upstream itself, called through the proxy) under
    load; the proxy on a fixed port fails 20% of /endpoint/1, then all of it from 1 s."""
    import pandas as pd
    from cli_runs import running

    from blastradius.analysis.report import write_report

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scenario = {
        "name": "proxied",
        "load": {"rate": 100, "duration": "2s", "timeout": "1s"},
        "generators": 1,
        "proxies": [
            {
                "name": "pay",
                "upstream": quick,
                "port": port,
                "routes": ["/endpoint/1"],
                "errors": 0.2,
                "seed": 4,
                "faults": [{"at": "1s", "endpoint": 0, "errors": 1.0}],
            }
        ],
        "targets": [
            {
                "name": "svc",
                "urls": [
                    f"http://127.0.0.1:{port}/endpoint/0",
                    f"http://127.0.0.1:{port}/endpoint/1",
                ],
            }
        ],
    }
    with running(tmp_path, scenario) as run:
        _, stderr, run_dir = run.end(300)
    assert run.process.returncode == 0, stderr
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["services"]["urls"]["proxy pay"] == f"http://127.0.0.1:{port}"
    block = manifest["targets"]["svc"]
    rows = pd.read_parquet(run_dir / "requests")
    through = rows[rows["endpoint"] == 1]
    (route,) = block["proxies"]["pay"]["routes"]
    assert route["route"] == "/endpoint/1" and route["requests"] == len(through) == 100
    assert route["errors"] == (through["status"] == 503).sum() > 0
    assert block["proxies"]["pay"]["unmatched"] == 100
    assert rows[rows["endpoint"] == 0]["ok"].all()
    late = through[through["intended_ns"] >= block["start_ns"] + S + 50 * MS]
    assert len(late) > 30 and (late["status"] == 503).all()
    assert {"at_s": 1.0, "label": "pay: endpoint 0: errors 1"} in block["faults"]
    page = write_report([str(run_dir)], tmp_path / "report").html.read_text()
    injected = page.split("<h2>Injected by proxies</h2>")[1].split("<h2>")[0]
    assert f"<td>{route['errors']:,}</td>" in injected and "/endpoint/1" in injected


@pytest.mark.parametrize(
    ("proxies", "message"),
    [
        ([{"name": "p"}], "proxies[0].upstream: expected text"),
        ([{"name": "p", "upstream": "http://h", "port": 70000}], "proxies[0].port: 70000"),
        ([{"name": "p", "upstream": "http://h", "routes": "/a"}], "proxies[0].routes: expected"),
        (
            [{"name": "p", "upstream": "http://h", "routes": ["x"]}],
            "proxies[0].routes[0]: route 'x'",
        ),
        ([{"name": "p", "upstream": "ftp://h"}], "proxies[0].upstream: 'ftp://h'"),
        (
            [{"name": "p", "upstream": "http://h", "hangs": 3}],
            "proxies[0].hangs: hangs spec item 1",
        ),
        ([{"name": "p", "upstream": "http://h", "speed": 1}], "proxies[0].speed: unknown key"),
        (
            [
                {
                    "name": "p",
                    "upstream": "http://h",
                    "faults": [{"at": "1s", "endpoint": 2, "hangs": 1}],
                }
            ],
            "proxies[0].faults: endpoint 2 does not exist",
        ),
        (
            [{"name": "p", "upstream": "http://h"}, {"name": "p", "upstream": "http://i"}],
            "proxies: the name 'p' is used twice",
        ),
        ({"name": "p"}, "proxies: expected a list"),
        ([{"name": "p", "upstream": "http://h", "errors": 0.5, "hangs": 0.6}], "proxies[0]: "),
        ([{"name": "p", "upstream": "http://h", "error_status": 600}], "proxies[0].error_st"),
        (
            [{"name": "p", "upstream": "http://h", "faults": [{"at": "1s"}]}],
            "proxies[0].faults[0]: endpoint: missing",
        ),
    ],
)
def test_bad_proxies_in_a_scenario_name_the_key(proxies, message):
    from blastradius.cluster.scenario import parse_scenario

    document = {
        "name": "x",
        "load": {"rate": 10, "duration": "1s"},
        "targets": [{"name": "t", "url": "http://127.0.0.1:9/"}],
        "proxies": proxies,
    }
    with pytest.raises(ValueError) as info:
        parse_scenario(document)
    assert str(info.value).startswith(message), str(info.value)
