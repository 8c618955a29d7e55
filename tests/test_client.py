"""The generator's HTTP client against scripted servers on loopback: every ending of a request."""

import asyncio
import contextlib
import socket
import threading
import time

import pytest
from servers import read_request, scripted_server

from blastradius.workers.client import HttpClient, PreparedRequest
from blastradius.workers.outcome import Ending


@pytest.mark.parametrize(
    ("url", "origin", "request_line", "host"),
    [
        (
            "http://127.0.0.1:8080/call/3",
            ("http", "127.0.0.1", 8080),
            "GET /call/3 HTTP/1.1",
            "127.0.0.1:8080",
        ),
        ("http://example.test/", ("http", "example.test", 80), "GET / HTTP/1.1", "example.test"),
        ("http://example.test", ("http", "example.test", 80), "GET / HTTP/1.1", "example.test"),
        (
            "https://example.test/a?b=1&c=2",
            ("https", "example.test", 443),
            "GET /a?b=1&c=2 HTTP/1.1",
            "example.test",
        ),
        ("http://[::1]:9000/x", ("http", "::1", 9000), "GET /x HTTP/1.1", "[::1]:9000"),
    ],
)
def test_urls_become_origins_and_request_bytes(url, origin, request_line, host):
    endpoint = PreparedRequest.from_url(url)
    assert endpoint.origin == origin
    lines = endpoint.data.decode().split("\r\n")
    assert lines[0] == request_line
    assert f"Host: {host}" in lines
    assert endpoint.data.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("url", ["ftp://x/", "127.0.0.1:80/", "http:///path", "http://x:99999/"])
def test_bad_urls_are_refused_naming_the_url(url):
    with pytest.raises(ValueError, match=r"^url: "):
        PreparedRequest.from_url(url)


def send(urls: list[str], timeout_s: float = 2.0, gap_s: float = 0.0) -> list[tuple]:
    """Send one request per URL, one after another; (status, bytes_in, error) of each."""

    async def main() -> list[tuple]:
        outcomes: list[tuple] = []
        done = asyncio.Event()

        def on_done(context, status, bytes_in, error, kept, phases):
            outcomes.append((status, bytes_in, error))
            done.set()

        client = HttpClient(max_connections=4, timeout_s=timeout_s, on_done=on_done)
        for i, url in enumerate(urls):
            done.clear()
            client.send(PreparedRequest.from_url(url), i)
            await done.wait()
            await asyncio.sleep(gap_s)
        client.close()
        return outcomes

    return asyncio.run(main())


def keep_alive_answers(conn: socket.socket) -> None:
    with conn:
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_sequential_requests_reuse_one_keep_alive_connection():
    with scripted_server(keep_alive_answers) as (url, accepted):
        assert send([url] * 20) == [(200, 2, 0)] * 20
        assert len(accepted) == 1


def test_a_stale_keep_alive_connection_is_retried_once_on_a_new_one():
    def answer_once_then_close(conn: socket.socket) -> None:
        with conn:
            if read_request(conn):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.05)  # an idle timeout on the server's side

    with scripted_server(answer_once_then_close) as (url, accepted):
        assert send([url, url], gap_s=0.2) == [(200, 2, 0), (200, 2, 0)]
        assert len(accepted) == 2


def test_bodies_framed_by_chunks_or_by_closing_are_counted():
    def chunked(conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            conn.sendall(
                b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
            )
            read_request(conn)

    def until_close(conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello")

    with scripted_server(chunked) as (url, _):
        assert send([url]) == [(503, 7, 0)]
    with scripted_server(until_close) as (url, _):
        assert send([url]) == [(200, 5, 0)]


def test_a_connection_that_breaks_mid_response_is_a_reset():
    def cut(conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")

    with scripted_server(cut) as (url, _):
        assert send([url]) == [(0, 10, Ending.BROKEN)]


def test_a_response_that_is_not_http_is_other():
    def garbage(conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
            time.sleep(0.5)

    with scripted_server(garbage) as (url, _):
        assert send([url]) == [(0, 0, Ending.NOT_HTTP)]


def test_silence_is_a_timeout_and_the_connection_is_closed():
    closed = threading.Event()

    def silent(conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            if conn.recv(1) == b"":
                closed.set()

    with scripted_server(silent) as (url, _):
        start = time.monotonic()
        assert send([url], timeout_s=0.5) == [(0, 0, Ending.DEADLINE)]
        assert 0.45 <= time.monotonic() - start < 1.5
        assert closed.wait(5)


def test_a_refused_connection_is_connect():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert send([f"http://127.0.0.1:{port}/"]) == [(0, 0, Ending.REFUSED)]


def syn_dropping_port(stack: contextlib.ExitStack) -> int:
    """A port whose accept queue is full: further connects neither open nor fail."""
    server = stack.enter_context(socket.socket())
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    for _ in range(4):  # fill the queue (never accepted)
        client = stack.enter_context(socket.socket())
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", port))
    return port


def test_a_connection_that_never_opens_ends_at_the_deadline_with_nothing_received():
    with contextlib.ExitStack() as stack:
        port = syn_dropping_port(stack)
        assert send([f"http://127.0.0.1:{port}/"], timeout_s=0.3) == [(0, 0, Ending.DEADLINE)]


def test_closing_the_client_abandons_what_is_in_flight_with_nothing_received():
    """One request waits for its connection to open, one for its response: both end
    ABANDONED, with status 0 and no bytes (the response never came)."""

    def silent(conn: socket.socket) -> None:
        with conn:
            read_request(conn)
            conn.recv(1)

    async def main(urls: list[str]) -> list[tuple]:
        outcomes: list[tuple] = []

        def on_done(context, status, bytes_in, ending, kept, phases):
            outcomes.append((context, status, bytes_in, ending))

        client = HttpClient(max_connections=4, timeout_s=30, on_done=on_done)
        for i, url in enumerate(urls):
            client.send(PreparedRequest.from_url(url), i)
        await asyncio.sleep(0.3)  # the silent server's request is on the wire by now
        client.close()
        return sorted(outcomes)

    with contextlib.ExitStack() as stack:
        port = syn_dropping_port(stack)
        url, _ = stack.enter_context(scripted_server(silent))
        outcomes = asyncio.run(main([f"http://127.0.0.1:{port}/", url]))
    assert outcomes == [(0, 0, 0, Ending.ABANDONED), (1, 0, 0, Ending.ABANDONED)]
