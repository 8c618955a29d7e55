"""The generator against servers it did not write: every row exact (status, error, bytes, ok).

Real servers (gunicorn's sync worker, uvicorn, ``http.server``, nginx where
installed) for what they do on demand; raw-socket servers for what no real
server does on demand (truncation, interim responses, resets, garbage, hangs,
trickles). Each case runs the generator itself (``run_share``, no Ray).
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import struct
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from real_servers import gunicorn_sync, http_server, nginx, uvicorn_echo
from servers import read_request, scripted_server

from blastradius.workers.generator import Share, run_share
from blastradius.workers.schedule import Schedule
from blastradius.workers.template import RequestTemplate

S = 1_000_000_000
MS = 1_000_000


def rows(
    requests: list, rate: float = 20, count: int = 1, timeout_s: float = 2.0, **plan
) -> pd.DataFrame:
    """Run ``count`` requests at ``rate``/s through the generator; rows in send order."""
    batches: list[pa.RecordBatch] = []
    schedule = Schedule.constant_rate(rate, requests=count)
    run_share(Share("t", tuple(requests), schedule, int(timeout_s * S), **plan), batches.append)
    return pa.Table.from_batches(batches).to_pandas().sort_values("seq", ignore_index=True)


def outcomes(frame: pd.DataFrame) -> list[tuple]:
    return [
        (int(r.status), r.error, int(r.bytes_in), bool(r.ok)) for r in frame.itertuples(index=False)
    ]


def one(request, **kwargs) -> tuple:
    (outcome,) = outcomes(rows([request], **kwargs))
    return outcome


# --- gunicorn's sync worker: one connection at a time ---------------------------------------


@pytest.fixture(scope="module")
def gunicorn():
    with gunicorn_sync() as url:
        yield url


def test_a_one_connection_server_is_not_stalled_by_the_generator(gunicorn):
    """20 req/s for 3 s: every request served at once (pre-opened idle connections would
    each hold gunicorn's only worker until the generator got round to using them)."""
    frame = rows([f"{gunicorn}/ok"], rate=20, count=60)
    assert outcomes(frame) == [(200, "", 5, True)] * 60
    assert frame["latency_ns"].max() < 500 * MS


def test_warm_connections_are_opened_only_when_asked(gunicorn):
    frame = rows([f"{gunicorn}/ok"], rate=20, count=10, connections=1)
    assert outcomes(frame) == [(200, "", 5, True)] * 10


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ok", (200, "", 5, True)),
        ("/big", (200, "", 1_048_576, True)),
        ("/stream", (200, "", 10, True)),  # framed by gunicorn without a length
        ("/empty", (204, "", 0, True)),
        ("/redirect", (302, "http", 0, False)),  # recorded, not followed
        ("/missing", (404, "http", 0, False)),
    ],
)
def test_gunicorn_responses_become_exact_rows(gunicorn, path, expected):
    assert one(f"{gunicorn}{path}") == expected


def test_a_head_response_has_no_body_whatever_its_length(gunicorn):
    head = RequestTemplate(f"{gunicorn}/big", method="HEAD")
    assert outcomes(rows([head], count=3)) == [(200, "", 0, True)] * 3


# --- uvicorn: keep-alive, methods, headers, bodies ------------------------------------------


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    log = tmp_path_factory.mktemp("echo") / "requests.jsonl"
    with uvicorn_echo(log) as url:
        yield url, log


def received(log: Path) -> list[dict]:
    lines = log.read_bytes().splitlines() if log.exists() else []
    log.write_bytes(b"")
    return [json.loads(line) for line in lines]


def test_method_headers_body_and_host_arrive_exactly(echo, monkeypatch):
    from blastradius.cluster.scenario import parse_target

    url, log = echo
    received(log)
    monkeypatch.setenv("BR_TEST_TOKEN", "tok-123")
    target = parse_target(
        {
            "name": "api",
            "url": f"{url}/orders/7?x=1",
            "method": "PUT",
            "headers": {"Authorization": "Bearer ${BR_TEST_TOKEN}", "X-Trace": "a b"},
            "json": {"item": 42, "name": "é"},
        },
        "targets[0]",
    )
    frame = rows(list(target.requests), count=2)
    assert outcomes(frame) == [(200, "", frame["bytes_in"][0], True)] * 2
    seen = received(log)
    assert len(seen) == 2
    request = seen[0]
    headers = dict(request["headers"])
    assert request["method"] == "PUT" and request["path"] == "/orders/7"
    assert request["query"] == "x=1"
    assert headers["host"] == url.removeprefix("http://")
    assert headers["authorization"] == "Bearer tok-123"
    assert headers["x-trace"] == "a b"
    assert headers["content-type"] == "application/json"
    body = base64.b64decode(request["body"])
    assert json.loads(body) == {"item": 42, "name": "é"}
    assert headers["content-length"] == str(len(body))


def test_every_method_is_sent_and_head_keeps_the_connection_usable(echo):
    url, log = echo
    received(log)
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    templates = [RequestTemplate(f"{url}/m", method=m) for m in methods]
    frame = rows(templates, rate=50, count=14)
    results = outcomes(frame)
    assert all(status == 200 and ok for status, _, _, ok in results)
    assert [b for i, (_, _, b, _) in enumerate(results) if i % 7 == 1] == [0, 0]  # HEAD
    assert sorted(r["method"] for r in received(log)) == sorted(methods * 2)


def test_urls_are_percent_encoded_and_credentials_become_basic_auth(echo):
    url, log = echo
    received(log)
    port = url.rsplit(":", 1)[1]
    status, error, _, ok = one(f"http://user:p%40ss@127.0.0.1:{port}/a b/é?q=x y")
    assert (status, error, ok) == (200, "", True)
    request = received(log)[0]
    assert request["raw_path"] == "/a%20b/%C3%A9"
    assert request["query"] == "q=x%20y"
    basic = dict(request["headers"])["authorization"].removeprefix("Basic ")
    assert base64.b64decode(basic) == b"user:p@ss"


def test_a_not_modified_answer_has_no_body(echo):
    url, _ = echo
    assert one(f"{url}/not-modified") == (304, "http", 0, False)


# --- http.server: HTTP/1.0, a connection per response ---------------------------------------


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    (root / "a.txt").write_bytes(b"0123456789")
    (root / "a b.txt").write_bytes(b"space")
    (root / "é.txt").write_bytes(b"accent")
    (root / "big.bin").write_bytes(b"z" * 1_000_003)
    return root


def test_the_standard_library_server_gives_exact_rows(files):
    with http_server(files) as url:
        assert outcomes(rows([f"{url}/a.txt"], count=5)) == [(200, "", 10, True)] * 5
        assert one(f"{url}/a b.txt") == (200, "", 5, True)
        assert one(f"{url}/é.txt") == (200, "", 6, True)
        assert one(f"{url}/big.bin") == (200, "", 1_000_003, True)
        status, error, _, ok = one(f"{url}/nothing")  # an HTML error page
        assert (status, error, ok) == (404, "http", False)
        assert one(RequestTemplate(f"{url}/a.txt", method="HEAD")) == (200, "", 0, True)


# --- nginx, where installed ------------------------------------------------------------------


def test_nginx_gives_exact_rows_over_keep_alive(files, tmp_path):
    with nginx(files, tmp_path) as url:
        frame = rows([f"{url}/a.txt", RequestTemplate(f"{url}/big.bin", method="HEAD")], count=6)
        assert outcomes(frame) == [(200, "", 10, True), (200, "", 0, True)] * 3
        assert one(f"{url}/big.bin") == (200, "", 1_000_003, True)
        assert one(f"{url}/missing")[:2] == (404, "http")


def test_nginx_on_ipv6_at_the_default_port_gets_a_bracketed_host(files, tmp_path):
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 80))
        except OSError as exc:
            pytest.skip(f"cannot listen on [::1]:80 here ({exc.strerror})")
    with nginx(files, tmp_path, listen="[::1]:80"):
        assert one("http://[::1]/a.txt") == (200, "", 10, True)


# --- raw sockets: what real servers do only by accident ---------------------------------------


def _serve(*chunks: bytes, gap_s: float = 0.0, linger_reset: bool = False, then_wait: float = 0):
    def handle(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # a client that gave up may reset it
            if not read_request(conn):
                return
            for chunk in chunks:
                conn.sendall(chunk)
                if gap_s:
                    time.sleep(gap_s)
            if then_wait:
                time.sleep(then_wait)
            if linger_reset:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    return handle


RAW_CASES = {
    "truncated-content-length": (
        _serve(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" + b"x" * 100
        ),
        (0, "reset", 100, False),
    ),
    "truncated-chunked": (
        _serve(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
        (0, "reset", 5, False),
    ),
    "truncated-http10-with-length": (
        _serve(b"HTTP/1.0 200 OK\r\nContent-Length: 50\r\n\r\n" + b"y" * 10),
        (0, "reset", 10, False),
    ),
    "http10-ended-by-close": (
        _serve(b"HTTP/1.0 200 OK\r\n\r\nhello"),
        (200, "", 5, True),
    ),
    "early-hints-then-final": (
        _serve(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            gap_s=0.05,
        ),
        (200, "", 2, True),
    ),
    "continue-then-final": (
        _serve(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
        (201, "", 0, True),
    ),
    "interim-199-then-final": (  # every 1xx but 101 is interim, the last one too
        _serve(b"HTTP/1.1 199 Misc\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        (200, "", 2, True),
    ),
    "early-hints-then-final-ended-by-close": (
        _serve(b"HTTP/1.1 103 Early Hints\r\n\r\nHTTP/1.0 200 OK\r\n\r\nhello"),
        (200, "", 5, True),
    ),
    "switching-protocols": (
        _serve(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", then_wait=0.2),
        (101, "other", 0, False),
    ),
    "reset-mid-body": (
        _serve(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 30, linger_reset=True),
        (0, "reset", 30, False),
    ),
    "reset-of-a-body-ended-by-closing": (
        _serve(b"HTTP/1.0 200 OK\r\n\r\nhel", then_wait=0.1, linger_reset=True),
        (0, "reset", 3, False),
    ),
    "garbage": (_serve(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", then_wait=0.3), (0, "other", 0, False)),
    "hang": (_serve(then_wait=3), (0, "timeout", 0, False)),
    "trickle-within-deadline": (
        _serve(
            *(bytes([b]) for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), gap_s=0.005
        ),
        (200, "", 2, True),
    ),
    "trickle-past-deadline": (
        _serve(
            *(bytes([b]) for b in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), gap_s=0.05
        ),
        (0, "timeout", 0, False),
    ),
}


@pytest.mark.parametrize("case", list(RAW_CASES))
def test_raw_server_cases_become_exact_rows(case):
    handle, expected = RAW_CASES[case]
    with scripted_server(handle) as (url, _):
        assert one(url, timeout_s=1.0) == expected


def test_a_late_final_response_after_an_interim_one_belongs_to_its_own_request():
    """50 req/s, each answered 103 then 200 50 ms later: every row is its own 200."""

    def hints(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):  # the client may close an idle connection
            while read_request(conn):
                conn.sendall(b"HTTP/1.1 103 Early Hints\r\n\r\n")
                time.sleep(0.05)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    with scripted_server(hints) as (url, _):
        frame = rows([url], rate=50, count=50)
    assert outcomes(frame) == [(200, "", 2, True)] * 50
    assert (frame["service_ns"] >= 50 * MS).all()


def test_a_partial_status_line_on_a_reused_connection_is_a_reset_not_a_retry():
    def then_cut(conn: socket.socket) -> None:
        with conn:
            if read_request(conn):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            if read_request(conn):
                conn.sendall(b"HTTP/1.")

    with scripted_server(then_cut) as (url, accepted):
        frame = rows([url], rate=10, count=2)
    assert outcomes(frame) == [(200, "", 2, True), (0, "reset", 0, False)]
    assert len(accepted) == 1


def test_a_body_past_2_gib_is_counted_exactly():
    size = 2**31 + 12_345
    block = memoryview(bytes(4 << 20))

    def huge(conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
            left = size
            while left:
                n = min(left, len(block))
                conn.sendall(block[:n])
                left -= n

    with scripted_server(huge) as (url, _):
        assert one(url, timeout_s=120) == (200, "", size, True)
