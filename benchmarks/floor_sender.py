"""The least a Python open-loop client on uvloop does per request; prints one JSON line.

    python benchmarks/floor_sender.py --url http://127.0.0.1:PORT/ --rate R --seconds S

Run by ``client_cost.py`` beside ``probe_generator.py``, pinned to the same core, as
the floor a generator's CPU per request is measured against. It waits as the
generator does, in whole 1 ms timer ticks (never spinning), and at each tick writes
one fixed GET per request due on a free keep-alive connection. It does nothing else
a real client must: no parsing beyond counting the bytes of a response of a known
size, no timeout, no record, no Parquet. What it costs per request at a rate is what
the event loop and the kernel cost there, the wake-ups included.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from urllib.parse import urlsplit

import uvloop

TICK_S = 0.001


class _Connection(asyncio.Protocol):
    """One keep-alive connection; a response is complete when its bytes have come."""

    def __init__(self, sender: _Sender) -> None:
        self.sender = sender
        self.transport: asyncio.Transport | None = None
        self.pending = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.pending -= len(data)
        if self.pending <= 0:
            self.sender.done(self)


class _Sender:
    def __init__(self, request: bytes, response_size: int) -> None:
        self.request = request
        self.response_size = response_size
        self.free: list[_Connection] = []
        self.ok = 0
        self.skipped = 0

    def send(self) -> None:
        if not self.free:
            self.skipped += 1  # a real client would open a connection or queue it
            return
        connection = self.free.pop()
        connection.pending = self.response_size
        assert connection.transport is not None
        connection.transport.write(self.request)

    def done(self, connection: _Connection) -> None:
        self.ok += 1
        self.free.append(connection)


def response_size(host: str, port: int, request: bytes) -> int:
    """The bytes of one response to ``request``: its head and its Content-Length."""
    import socket

    with socket.create_connection((host, port)) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, _ = data.partition(b"\r\n\r\n")
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return len(head) + 4 + int(value)
    raise SystemExit("the response has no Content-Length")


async def run(host: str, port: int, rate: float, seconds: float, connections: int) -> dict:
    loop = asyncio.get_running_loop()
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    sender = _Sender(request, response_size(host, port, request))
    for _ in range(connections):
        _, connection = await loop.create_connection(lambda: _Connection(sender), host, port)
        sender.free.append(connection)
    total = int(rate * seconds)
    start = time.monotonic()
    sent = 0
    while sent < total:
        now = time.monotonic()
        due = start + sent / rate
        if due > now:
            await asyncio.sleep(math.ceil((due - now) / TICK_S) * TICK_S)
            now = time.monotonic()
        while sent < total and start + sent / rate <= now:
            sender.send()
            sent += 1
    deadline = time.monotonic() + 5
    while sender.ok + sender.skipped < total and time.monotonic() < deadline:
        await asyncio.sleep(TICK_S)
    return {"rate": rate, "planned": total, "rows": total, "ok": sender.ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    url = urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    print(json.dumps(uvloop.run(run(host, port, args.rate, args.seconds, args.connections))))


if __name__ == "__main__":
    main()
