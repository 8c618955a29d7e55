"""The async target: an aiohttp server calling the dependency without blocking.

One shared ``aiohttp.ClientSession`` serves every request. Its connection
limit (``max_connections``, 0 = unlimited) is the only bounded resource: with
a limit, requests wait for a pooled connection, so a slow endpoint can starve
the pool much as it starves a thread pool (a bulkhead of its own).

``GET /call/{i}``: 200 when the dependency's ``/endpoint/{i}`` answers 2xx,
504 when the dependency timeout fires (waiting for a pooled connection
counts), 502 on any other dependency failure. ``GET /stats``: in-flight.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from blastradius.targets.validation import validate_dependency_url, validate_timeout

_SESSION = web.AppKey("session", aiohttp.ClientSession)


@dataclass(frozen=True)
class AsyncConfig:
    """The async target: its dependency, connection limit and dependency timeout."""

    dependency: str
    max_connections: int = 0  # 0: unlimited
    dependency_timeout_s: float | None = None  # None: wait as long as the dependency takes

    def __post_init__(self) -> None:
        object.__setattr__(self, "dependency", validate_dependency_url(self.dependency))
        limit = self.max_connections
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"max-connections: must be 0 (unlimited) or more (got {limit})")
        validate_timeout(self.dependency_timeout_s)


async def _call(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    try:
        async with session.get(url) as response:
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

    async def call(request: web.Request) -> web.Response:
        url = f"{config.dependency}/endpoint/{request.match_info['i']}"
        stats["requests"] += 1
        stats["in_flight"] += 1
        stats["peak_in_flight"] = max(stats["peak_in_flight"], stats["in_flight"])
        try:
            status, text = await _call(request.app[_SESSION], url)
        finally:
            stats["in_flight"] -= 1
        return web.Response(status=status, text=text)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def stats_handler(request: web.Request) -> web.Response:
        return web.json_response({**stats, "max_connections": config.max_connections})

    async def session_context(app: web.Application):
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
    return app
