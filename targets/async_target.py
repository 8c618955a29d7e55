"""The async target: an aiohttp server calling the dependency without blocking.

One shared ``aiohttp.ClientSession`` serves every request. Its connection
limit (``max_connections``, 0 = unlimited) is the only bounded resource: with
a limit, requests wait for a pooled connection, so a slow endpoint can starve
the pool much as it starves a thread pool (a bulkhead of its own).

With ``dependency_http2`` it calls the dependency over HTTP/2 instead (h2c with
prior knowledge, the generator's own client, ``workers/http2.py``): at most
``max_connections`` connections (0: as many as it needs), each carrying as many
calls at once as the dependency's ``SETTINGS_MAX_CONCURRENT_STREAMS`` allows (the
reference dependency's: 100). A call that finds every stream busy waits for one,
as a call waits for a pooled connection over HTTP/1.1.

``GET /call/{i}``: 200 when the dependency's ``/endpoint/{i}`` answers 2xx,
504 when the dependency timeout fires (waiting for a pooled connection, or a
stream, counts), 502 on any other dependency failure. ``GET /stats``: in-flight, and
the patterns' counts; ``GET /events``: the patterns' time-stamped events.

With ``patterns`` (``targets/patterns.py``), each call goes through them
(``targets/guarded.py``). ``shed`` needs ``max_connections``: the requests waiting for
one of them are the service's queue, kept as a ``Line``; one that waits over the queue
timeout is refused then, not when a connection comes free.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from blastradius.targets import h2c
from blastradius.targets.guarded import Answer, Guards
from blastradius.targets.guards import Line, parse_deadline
from blastradius.targets.patterns import DEADLINE_HEADER, Patterns
from blastradius.targets.validation import validate_dependency_url, validate_timeout
from blastradius.workers.client import PreparedRequest
from blastradius.workers.http2 import Http2Client
from blastradius.workers.outcome import Ending

_SESSION = web.AppKey("session", aiohttp.ClientSession)


@dataclass(frozen=True)
class AsyncConfig:
    """The async target: its dependency, connection limit and dependency timeout."""

    dependency: str
    max_connections: int = 0  # 0: unlimited
    dependency_timeout_s: float | None = None  # None: wait as long as the dependency takes
    dependency_http2: bool = False  # call it over h2c rather than HTTP/1.1
    patterns: Patterns = field(default_factory=Patterns)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dependency", validate_dependency_url(self.dependency))
        limit = self.max_connections
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"max-connections: must be 0 (unlimited) or more (got {limit})")
        validate_timeout(self.dependency_timeout_s)
        if self.patterns.shed is not None and not limit:
            raise ValueError(
                "shed: needs max-connections (without a limit the async target has no queue)"
            )


class _Places:
    """The ``max_connections`` places for calls; a request without one waits in a
    ``Line``, and is refused once it has waited over the queue timeout."""

    def __init__(self, size: int, line: Line[asyncio.Future[bool]]) -> None:
        self.free, self.line = size, line
        self.timeout_s = line.config.queue_timeout_ns / 1e9

    async def enter(self) -> bool:
        """Take a place (True), or be shed (False) after waiting too long for one."""
        if self.free > 0 and not len(self.line):
            self.free -= 1
            return True
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.line.put(waiter)
        timer = asyncio.get_running_loop().call_later(self.timeout_s, self._expire, waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.leave()  # given a place as its handler was cancelled
            else:
                self.line.remove(waiter)
            raise
        finally:
            timer.cancel()

    def _expire(self, waiter: asyncio.Future[bool]) -> None:
        if self.line.remove(waiter) and not waiter.done():
            self.line.refuse()
            waiter.set_result(False)

    def leave(self) -> None:
        """Give a place back: to the next in line that still waits, else to the pool."""
        while (taken := self.line.take()) is not None:
            waiter, waited_ns = taken
            if waiter.done():  # its handler was cancelled
                continue
            if self.line.too_long(waited_ns):
                waiter.set_result(False)
                continue
            waiter.set_result(True)
            return
        self.free += 1


_WAIT_FOREVER_S = 86_400.0  # the HTTP/2 client's timeout when the target has none
_H2_UNLIMITED = 10_000  # HTTP/2 connections with no limit given (100 calls each)


class _Http2Calls:
    """Calls to the dependency over HTTP/2, each awaited as a future."""

    def __init__(self, config: AsyncConfig) -> None:
        timeout = config.dependency_timeout_s or _WAIT_FOREVER_S
        connections = config.max_connections or _H2_UNLIMITED
        self.client = Http2Client(
            connections, h2c.MAX_STREAMS, timeout, self._done, timeout_from_send=True
        )
        self.requests: dict[str, PreparedRequest] = {}

    @staticmethod
    def _done(future, status, _bytes, ending, _kept, _phases) -> None:
        if not future.done():  # (a call whose handler was cancelled)
            future.set_result((status, ending))

    async def call(self, url: str, timeout_s: float | None = None) -> Answer:
        """Call ``url``; ``timeout_s``: sooner than the client's own timeout."""
        if timeout_s is None:
            return await self._call(url)
        try:
            return await asyncio.wait_for(self._call(url), timeout_s)
        except TimeoutError:
            return 504, "dependency timed out\n"

    async def _call(self, url: str) -> Answer:
        request = self.requests.get(url)
        if request is None:
            request = self.requests[url] = PreparedRequest.from_url(url)
        future: asyncio.Future[tuple[int, Ending]] = asyncio.get_running_loop().create_future()
        self.client.send(request, future)
        status, ending = await future
        if ending in (Ending.DEADLINE, Ending.NOT_SENT):
            return 504, "dependency timed out\n"
        if ending != Ending.RESPONSE:
            return 502, f"dependency failed: {ending.name.lower()}\n"
        if not 200 <= status < 300:
            return 502, f"dependency answered {status}\n"
        return 200, "ok\n"


_HTTP2 = web.AppKey("http2", _Http2Calls)


async def _call(session: aiohttp.ClientSession, url: str, timeout_s: float | None) -> Answer:
    """Call ``url``; ``timeout_s``: sooner than the session's own timeout."""
    # (aiohttp reads timeout=None as no timeout at all, not as the session's)
    timeout = session.timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.get(url, timeout=timeout) as response:
            await response.read()
    except TimeoutError:
        return 504, "dependency timed out\n"
    except aiohttp.ClientError as exc:
        return 502, f"dependency failed: {type(exc).__name__}\n"
    if not response.ok:
        return 502, f"dependency answered {response.status}\n"
    return 200, "ok\n"


def make_app(config: AsyncConfig) -> web.Application:
    """The async target as an aiohttp application."""
    stats = {"in_flight": 0, "peak_in_flight": 0, "requests": 0}
    guards = Guards(config.patterns, config.dependency_timeout_s)
    line = guards.line
    places = None if line is None else _Places(config.max_connections, line)

    async def once(app: web.Application, url: str, timeout_s: float | None) -> Answer:
        if config.dependency_http2:
            return await app[_HTTP2].call(url, timeout_s)
        return await _call(app[_SESSION], url, timeout_s)

    async def guarded(request: web.Request, i: int) -> Answer:
        url = f"{config.dependency}/endpoint/{i}"
        admission = guards.admit(i, parse_deadline(request.headers.get(DEADLINE_HEADER)))
        if isinstance(admission, tuple):
            return admission
        answer = None
        try:
            while True:
                attempt = guards.attempt(admission)
                if isinstance(attempt, tuple):
                    answer = attempt
                    return answer
                timeout_s = attempt.timeout_s if attempt.cut else None
                answer = await once(request.app, url, timeout_s)
                guards.attempted(admission, attempt, answer[0])
                wait = guards.again(admission, answer[0])
                if wait is None:
                    return answer
                await asyncio.sleep(wait)
        finally:
            guards.finish(admission, None if answer is None else answer[0])

    async def call(request: web.Request) -> web.Response:
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
        try:
            if places is not None and not await places.enter():
                status, text = 503, "shed: waited too long for a connection\n"
            else:
                try:
                    status, text = await guarded(request, int(request.match_info["i"]))
                finally:
                    if places is not None:
                        places.leave()
        finally:
            stats["in_flight"] -= 1
        return web.Response(status=status, text=text)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stats_handler(request: web.Request) -> web.Response:
        http = "2" if config.dependency_http2 else "1.1"
        limit = {"max_connections": config.max_connections, "dependency_http": http}
        patterns = {"patterns": guards.stats()} if config.patterns else {}
        return web.json_response({**stats, **limit, **patterns})

    async def events(request: web.Request) -> web.Response:
        return web.json_response(guards.events.snapshot())

    async def session_context(app: web.Application):
        if config.dependency_http2:
            app[_HTTP2] = calls = _Http2Calls(config)
            yield
            calls.client.close()
            return
        timeout = aiohttp.ClientTimeout(total=config.dependency_timeout_s)
        connector = aiohttp.TCPConnector(limit=config.max_connections, limit_per_host=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            app[_SESSION] = session
            yield

    app = web.Application()
    app.cleanup_ctx.append(session_context)
    app.router.add_get(r"/call/{i:\d+}", call)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/stats", stats_handler)
    app.router.add_get("/events", events)
    return app
