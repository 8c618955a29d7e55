"""What every reference service does at its edge: bind, announce, run, stop.

Services bind their listening socket themselves before serving, so a port in
use is reported as ``ServeError`` (one line) rather than a server's
traceback, and ``port 0`` resolves to a real port before ``listening on`` is
printed.
"""

from __future__ import annotations

import asyncio
import errno
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import cast

from aiohttp import web

from blastradius.targets.faults import FaultClock
from blastradius.targets.h2c import H2C, Sniffer
from blastradius.targets.runtime import new_event_loop, raise_nofile_limit

LISTEN_BACKLOG = 4096


def add_clock(app: web.Application, path: str, clock: FaultClock) -> None:
    """``POST path?origin_ns=N``: the fault schedule starts at epoch time N (400 for
    anything else); the schedule restarts when the app starts serving."""

    async def set_clock(request: web.Request) -> web.Response:
        text = request.query.get("origin_ns", "")
        if not text.lstrip("-").isdigit():
            raise web.HTTPBadRequest(text="origin_ns: expected epoch nanoseconds\n")
        clock.start_at(int(text))
        return web.json_response({"origin_ns": int(text)})

    async def restart(app: web.Application) -> None:
        clock.restart()

    app.on_startup.append(restart)
    app.router.add_post(path, set_clock)


class ServeError(Exception):
    """A service could not start (address in use, bad host); the message is one line."""


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"--host {host!r}: {exc.strerror}") from None
    family, type_, proto, _, address = infos[0]
    sock = socket.socket(family, type_, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServeError(f"--port {port}: address {host}:{port} is already in use") from None
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


def url_of(sock: socket.socket) -> str:
    """``http://HOST:PORT`` of a listening socket."""
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def announce(url: str) -> None:
    """Print the one readiness line (``listening on http://HOST:PORT``) and flush."""
    print(f"listening on {url}", flush=True)


async def _serve_until_signalled(
    app: web.Application, sock: socket.socket, handler_cancellation: bool
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, handler_cancellation=handler_cancellation
    )
    await runner.setup()
    handler = app.get(H2C)
    server: asyncio.Server | None = None
    try:
        if handler is None:
            await web.SockSite(runner, sock, shutdown_timeout=1.0).start()
        else:  # h2c beside HTTP/1.1: each connection's first bytes say which
            http1 = cast(Callable[[], asyncio.Protocol], runner.server)
            server = await loop.create_server(lambda: Sniffer(http1, handler), sock=sock)
        announce(url_of(sock))
        await stop.wait()
    finally:
        if server is not None:
            server.close()
        await runner.cleanup()


def run_app(
    make_app: Callable[[], Awaitable[web.Application]] | Callable[[], web.Application],
    sock: socket.socket,
    handler_cancellation: bool = False,
) -> None:
    """Serve an aiohttp app on ``sock`` until SIGINT or SIGTERM, then stop cleanly."""
    raise_nofile_limit()

    async def main() -> None:
        made = make_app()
        app = made if isinstance(made, web.Application) else await made
        await _serve_until_signalled(app, sock, handler_cancellation)

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main())
    sys.stdout.flush()
