"""The generator's HTTP client edge: the session, and every outcome's error kind.

Every request ends as one row whose ``error`` is one of a closed set. This is
the one place exceptions are mapped onto it::

    ""         status 2xx, within the deadline
    http       a response with a status other than 2xx (status kept)
    timeout    no answer within the timeout of service time (TimeoutError, from the
               generator's cut or aiohttp's own timeouts), or an answer after the
               deadline (intended send time + timeout; decided by the generator)
    connect    no connection: refused, unreachable, DNS (ClientConnectorError)
    reset      the connection broke mid-request: ServerDisconnectedError,
               ClientPayloadError, ConnectionResetError, BrokenPipeError,
               ClientOSError with ECONNRESET/EPIPE
    dropped    never sent: the in-flight cap held it until its deadline passed
               (decided by the generator, not by an exception)
    other      anything else (an invalid URL, a redirect loop, ...)
"""

from __future__ import annotations

import errno

import aiohttp

from workers.record import ERROR_CODE

TIMEOUT = ERROR_CODE["timeout"]
CONNECT = ERROR_CODE["connect"]
RESET = ERROR_CODE["reset"]
HTTP = ERROR_CODE["http"]
DROPPED = ERROR_CODE["dropped"]
OTHER = ERROR_CODE["other"]

_RESET_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}


def classify(exc: BaseException) -> int:
    """The error code (``workers.record.ERROR_CODE``) of a request that raised ``exc``."""
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorError):
        return CONNECT
    if isinstance(
        exc,
        (
            aiohttp.ServerDisconnectedError,
            aiohttp.ClientPayloadError,
            ConnectionResetError,
            BrokenPipeError,
        ),
    ):
        return RESET
    if isinstance(exc, OSError) and exc.errno in _RESET_ERRNOS:
        return RESET
    return OTHER


def status_error(status: int) -> int:
    """Error code of a response: none for 2xx, ``http`` otherwise."""
    return 0 if 200 <= status < 300 else HTTP


def make_session(max_connections: int) -> aiohttp.ClientSession:
    """One session for a generator: pooled keep-alive connections, no cookies, no timeouts.

    Deadlines are applied per request from the intended send time, so the
    session's own timeout is off; ``max_connections`` equals the in-flight cap,
    so the pool never queues a request the generator has already counted as sent.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=False
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "blastradius"},
    )
