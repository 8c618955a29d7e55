"""The generator's HTTP/1.1 client: keep-alive connections, one request at a time on each.

General-purpose clients cost too much per request for a load generator (on a
2-core machine aiohttp's client spends ~300 us of CPU per request, as much
as the whole budget of a generator that must outpace its peers). This one is
built for the job: asyncio protocols (uvloop's where installed), request
bytes prepared once per URL, responses parsed by ``httptools`` (llhttp, in
C), completion by callback (no task per request), one timer per request.

Every request ends in exactly one call of ``on_done(context, status,
bytes_in, ending, kept, phases)``, with an ``workers.outcome.Ending`` that says how it
ended on the wire (a response, no response by the deadline, no connection,
no TLS session, a broken connection, not HTTP, closed by the client). The
error kind is decided from it in one place, ``workers.outcome.classify``.
A request prepared with ``keep`` (a session's step, which may capture from
its response) gets its response's headers and first ``KEEP_LIMIT`` body bytes
as ``kept``; every other request gets None, and nothing is kept for it.
``phases`` says where a request's time went on its connection: which one (its
number, counted from 1), how long opening it took when the request waited for
that (TCP, then TLS, timed apart), when the first byte of the response came
after the request was written, how long it waited for a stream (HTTP/2 only;
0 here), the HTTP it spoke (``PROTO_1``) and the HTTP/2 error code that reset
it (``NO_RESET`` here); None for a request that never had a connection.
A request on an idle keep-alive connection that broke before any byte of
the response came back is retried once on a new connection, as HTTP
clients do; nothing else is retried.

A response is complete when its framing says so (Content-Length, the last
chunk, or for a body without either, the connection's end). Interim ``1xx``
responses are skipped: the request waits for its final response.

``dropped`` and ``http`` are decided by the generator, not here.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

import httptools

from blastradius.targets.validation import FieldError, http_url
from blastradius.workers.outcome import Ending
from blastradius.workers.template import Tls

if TYPE_CHECKING:
    from blastradius.workers.template import RequestTemplate

# on_done(context, status, bytes_in, ending, kept, phases): the context is the caller's,
# passed back; ``kept`` is the response's headers and body for a request prepared with
# ``keep`` and answered, else None; ``phases`` is where its time went on its connection
# (None: it never had one).
OnDone = Callable[[Any, int, int, Ending, "Kept | None", "Phases | None"], None]
Kept = tuple[tuple[tuple[bytes, bytes], ...], bytes]
# (connection number, connect ns, TLS ns, first byte ns after the write or NO_BYTE, ns
# waited for a stream, PROTO_*, the stream's reset code or NO_RESET): opening the
# connection counts for the request that waited for it, and is 0 on a reused one.
Phases = tuple[int, int, int, int, int, int, int]
NO_BYTE = -(2**63)  # no byte of the response came (the rows' null)
NO_RESET = -1  # no RST_STREAM or GOAWAY ended it
PROTO_1, PROTO_2 = 0, 1  # ``workers.record.PROTOCOLS``: the HTTP a connection spoke
KEEP_LIMIT = 1 << 20  # the body bytes kept of a response; the rest is counted, not kept


PATH_SAFE = "/%!$&'()*+,;=:@-._~"  # RFC 3986 pchar and "/", with "%" kept as escapes
QUERY_SAFE = PATH_SAFE + "?"
_SET_BY_CLIENT = ("content-length", "transfer-encoding")
_BODY_METHODS = ("POST", "PUT", "PATCH")


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request prepared for sending: where to connect and the exact request bytes."""

    origin: tuple[str, str, int]  # scheme, host, port
    data: bytes  # the request's bytes, as sent
    head: bool = False  # a HEAD request: its response has no body whatever it announces
    keep: bool = False  # its response's headers and body go to on_done (a session's step)

    def with_header(self, name: bytes, value: bytes) -> PreparedRequest:
        """This request with one more header, last of its head."""
        end = self.data.index(b"\r\n\r\n") + 2
        data = b"".join((self.data[:end], name, b": ", value, b"\r\n", self.data[end:]))
        return PreparedRequest(self.origin, data, self.head, self.keep)

    @classmethod
    def from_url(cls, url: str) -> PreparedRequest:
        """Prepare a GET of ``url`` (http or https); ``ValueError`` names a bad URL."""
        return cls._prepare(url, "GET", (), b"")

    @classmethod
    def build(cls, template: RequestTemplate) -> PreparedRequest:
        """Prepare a request template; ``ValueError`` names what cannot be sent."""
        return cls._prepare(template.url, template.method, template.headers, template.body)

    @classmethod
    def _prepare(
        cls,
        url: str,
        method: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        keep: bool = False,
    ) -> PreparedRequest:
        """The request's bytes; with ``keep``, its response is handed back whole."""
        parts = http_url(url, "url")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            hostname = str(parts.hostname).encode("idna").decode("ascii")  # one: checked
        except (ValueError, UnicodeError):
            raise FieldError("url", f"{url!r} has a bad host or port") from None
        default = port == (443 if parts.scheme == "https" else 80)
        host = f"[{hostname}]" if ":" in hostname else hostname
        host = host if default else f"{host}:{port}"
        target = quote(parts.path or "/", safe=PATH_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=QUERY_SAFE)
        fields = {"host": ("Host", host), "user-agent": ("User-Agent", "blastradius")}
        fields["accept"] = ("Accept", "*/*")
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            basic = base64.b64encode(credentials.encode()).decode("ascii")
            fields["authorization"] = ("Authorization", f"Basic {basic}")
        for name, value in headers:
            if name.lower() in _SET_BY_CLIENT:
                raise FieldError(f"headers.{name}", "set from the body; remove it")
            fields[name.lower()] = (name, value)
        if body or method in _BODY_METHODS:
            fields["content-length"] = ("Content-Length", str(len(body)))
        lines = "".join(f"{name}: {value}\r\n" for name, value in fields.values())
        head = f"{method} {target} HTTP/1.1\r\n{lines}\r\n".encode("latin-1")
        return cls((parts.scheme, hostname, port), head + body, method == "HEAD", keep)


def _arm(loop: asyncio.AbstractEventLoop, deadline: float, callback, *args) -> asyncio.TimerHandle:
    return loop.call_later(max(deadline - time.monotonic(), 0.0), callback, *args)


def nodelay(transport: asyncio.BaseTransport) -> None:
    """Send small writes at once (no Nagle delay) on a TCP transport."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _early(deadline: float) -> bool:
    # Loop timers run on a cached millisecond clock and may fire a little before the
    # deadline on the real one; a request is cut only once its full timeout has passed.
    return time.monotonic() < deadline


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request on it at a time."""

    # Set once connected (``connection_made``), before anything else is done with it.
    transport: asyncio.Transport
    # Set by ``start`` with ``context``, and read only while ``context`` is set.
    request: PreparedRequest
    timer: asyncio.TimerHandle

    def __init__(self, client: HttpClient, origin: tuple[str, str, int], number: int) -> None:
        self.client, self.origin, self.number = client, origin, number
        # Opening it (TCP and TLS, and TLS alone): the next request's phases, then 0.
        self.connect_ns = self.tls_ns = 0
        self.written_ns = self.first_ns = 0  # this request's send and its first byte
        self.parser = httptools.HttpResponseParser(self)
        self.context: object = None
        self.deadline = 0.0
        self.bytes_in = 0
        self.headers_done = self.framed = self.received = self.head_done = False
        self.reused = False  # it has been idle: the peer may have closed it meanwhile
        # The response's headers and body, for a request with ``keep`` only.
        self.kept_headers: list[tuple[bytes, bytes]] = []
        self.kept_body: list[bytes] = []

    def start(self, request: PreparedRequest, context: object, deadline: float) -> None:
        """Send ``request``'s request; it must complete by ``deadline`` (time.monotonic)."""
        self.request, self.context, self.deadline = request, context, deadline
        self.bytes_in, self.headers_done, self.framed, self.received = 0, False, False, False
        if request.keep:
            self.kept_headers, self.kept_body = [], []
        self.timer = _arm(self.client.loop, deadline, self._time_out)
        self.written_ns = time.monotonic_ns()
        self.transport.write(request.data)

    def _time_out(self) -> None:
        if _early(self.deadline):
            self.timer = _arm(self.client.loop, self.deadline, self._time_out)
            return
        self._finish(0, Ending.DEADLINE)
        self.transport.abort()

    # --- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's: TCP or TLS
        nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.context is None:  # bytes nobody asked for: this connection is unusable
            self.transport.abort()
            return
        if not self.received:
            self.first_ns = time.monotonic_ns()
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # 101: the peer left HTTP/1.1
            self._finish(self.parser.get_status_code(), Ending.NOT_HTTP)
            self.transport.abort()
        except httptools.HttpParserError:
            if not self.head_done:
                self._finish(0, Ending.NOT_HTTP)
                self.transport.abort()
        if self.head_done:
            # httptools cannot be told that a HEAD response has no body: the response
            # ended with its head, and the next one needs a fresh parser.
            status, keep_alive = self.parser.get_status_code(), self.parser.should_keep_alive()
            self.parser, self.head_done = httptools.HttpResponseParser(self), False
            self._complete(status, keep_alive)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._forget(self)
        if self.context is None:
            return
        if self.headers_done and not self.framed and exc is None:
            self._finish(self.parser.get_status_code(), Ending.RESPONSE)  # ended by the close
        elif self.reused and not self.received:
            # An idle connection the peer had closed: send once more on a new one.
            context, self.context = self.context, None
            self.timer.cancel()
            self.client._open(_Pending(self.request, context, self.deadline))
        else:
            self._finish(0, Ending.BROKEN)  # nothing, part of a head, or a body cut short

    # --- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.request.keep:
            self.kept_headers.append((name, value))
        # Only Content-Length and Transfer-Encoding (14 and 17 bytes) frame a body.
        if len(name) in (14, 17) and not self.head_done:
            lower = name.lower()
            if lower == b"content-length" or lower == b"transfer-encoding":
                self.framed = True

    def on_headers_complete(self) -> None:
        self.headers_done = True
        if self.request.head and self.parser.get_status_code() >= 200:
            self.head_done = True  # ended in data_received, once this parser has returned

    def on_body(self, body: bytes) -> None:
        if not self.head_done:
            if self.request.keep and self.bytes_in < KEEP_LIMIT:
                self.kept_body.append(body[: KEEP_LIMIT - self.bytes_in])
            self.bytes_in += len(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            return
        status = self.parser.get_status_code()
        if status == 101:  # a switch of protocols nobody asked for: no HTTP/1.1 any more
            self._finish(status, Ending.NOT_HTTP)
            self.transport.abort()
            return
        if status < 200:  # interim (1xx): the final response follows
            self.headers_done = self.framed = False
            self.kept_headers = []
            return
        self._complete(status, self.parser.should_keep_alive())

    def _complete(self, status: int, keep_alive: bool) -> None:
        self._finish(status, Ending.RESPONSE, keep=keep_alive)
        if not keep_alive:
            self.transport.close()

    # --- the one exit of a request on a connection ---------------------------------------

    def _finish(self, status: int, ending: Ending, keep: bool = False) -> None:
        context = self.context
        if context is None:
            return
        self.context = None
        self.timer.cancel()
        if keep:
            self.reused = True
            self.client._idle.setdefault(self.origin, []).append(self)
        kept = None
        if self.request.keep and ending == Ending.RESPONSE:
            kept = (tuple(self.kept_headers), b"".join(self.kept_body))
        first = self.first_ns - self.written_ns if self.received else NO_BYTE
        phases = (self.number, self.connect_ns, self.tls_ns, first, 0, PROTO_1, NO_RESET)
        self.connect_ns = self.tls_ns = 0
        self.client.on_done(context, status, self.bytes_in, ending, kept, phases)


async def open_timed(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], Any],
    origin: tuple[str, str, int],
    context: ssl.SSLContext | None,
) -> tuple[asyncio.Transport, Any, int]:
    """TCP to ``origin``, then for https TLS over it with ``context``: the transport, its
    protocol (``factory``'s) and the TLS handshake's ns (0 in cleartext). A failure
    leaves nothing open."""
    scheme, host, port = origin
    transport, protocol = await loop.create_connection(factory, host, port)
    if scheme != "https":
        return transport, protocol, 0
    tcp = time.monotonic_ns()
    try:
        tls = await loop.start_tls(
            transport, protocol, cast(ssl.SSLContext, context), server_hostname=host
        )
    except BaseException:
        transport.abort()  # (closed already, as a rule: never left open)
        raise
    if tls is None:  # the peer closed it during the handshake
        raise ConnectionResetError("closed during the TLS handshake")
    return tls, protocol, time.monotonic_ns() - tcp


class ClosedEarly(ConnectionResetError):
    """The server closed a new connection before anything was sent on it."""


def _connect_failure(exc: BaseException) -> Ending:
    """How a failed connect ended: in TLS (after TCP connected), or before it; or closed by
    the server as it opened, as a request on it would have been (``BROKEN``)."""
    if isinstance(exc, ClosedEarly):
        return Ending.BROKEN
    return (
        Ending.TLS_FAILED
        if isinstance(exc, ssl.SSLError | ssl.CertificateError)
        else Ending.REFUSED
    )


class _Pending:
    """A request waiting for its connection to open."""

    __slots__ = ("context", "deadline", "request", "timer")

    timer: asyncio.TimerHandle  # set by ``HttpClient._open`` before the connection is asked for

    def __init__(self, request: PreparedRequest, context: object, deadline: float) -> None:
        self.request, self.context, self.deadline = request, context, deadline


class HttpClient:
    """Sends prepared requests over a bounded pool of keep-alive connections.

    At most ``max_connections`` connections are open; the caller keeps at most
    that many requests in flight. ``send`` uses an idle connection to the
    request's origin, or opens one (closing an idle one of another origin when
    the pool is full).
    """

    def __init__(
        self,
        max_connections: int,
        timeout_s: float,
        on_done: OnDone,
        tls: Tls | None = None,
        numbers: Iterator[int] | None = None,
    ) -> None:
        self.max_connections, self.timeout_s, self.on_done = max_connections, timeout_s, on_done
        self.loop = asyncio.get_running_loop()
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._all: set[_Connection] = set()
        self._pending: set[_Pending] = set()
        self._tls = tls
        self._ssl: ssl.SSLContext | None = None
        # Each connection's number: a count, shared with an HTTP/2 client this one serves.
        self._numbers = itertools.count(1) if numbers is None else numbers

    async def warm(
        self, prepared: Sequence[PreparedRequest], per_origin: int, timeout_s: float
    ) -> int:
        """Open up to ``per_origin`` idle connections to each origin (failures are ignored:
        a target that is down shows up as ``connect`` rows later). Returns how many opened.

        Idle connections are not free for every server: one that serves a connection at
        a time (or gives each new connection a thread) waits on them. Warm only on request.
        """
        origins = {request.origin: request for request in prepared}
        count = min(per_origin, self.max_connections // max(len(origins), 1))
        if count <= 0:
            return 0

        async def one(request: PreparedRequest) -> None:
            connection = await self._create(request.origin)
            connection.reused = True  # idle until used, so it may be stale by then
            connection.connect_ns = connection.tls_ns = 0  # opened before any request
            self._idle.setdefault(connection.origin, []).append(connection)

        attempts = [one(e) for e in origins.values() for _ in range(count)]
        results = await asyncio.wait_for(
            asyncio.gather(*attempts, return_exceptions=True), timeout_s
        )
        return sum(result is None for result in results)

    def send(self, request: PreparedRequest, context: object) -> None:
        """Send one request; ``on_done`` is called exactly once with its outcome."""
        deadline = time.monotonic() + self.timeout_s
        idle = self._idle.get(request.origin)
        if idle:
            idle.pop().start(request, context, deadline)
        else:
            self._open(_Pending(request, context, deadline))

    def _open(self, pending: _Pending) -> None:
        if len(self._all) + len(self._pending) >= self.max_connections:
            self._close_one_idle()
        pending.timer = _arm(self.loop, pending.deadline, self._expired, pending)
        self._pending.add(pending)
        self.loop.create_task(self._connect(pending))

    def _expired(self, pending: _Pending) -> None:
        if _early(pending.deadline):
            pending.timer = _arm(self.loop, pending.deadline, self._expired, pending)
            return
        self._pending.discard(pending)
        self.on_done(pending.context, 0, 0, Ending.DEADLINE, None, None)

    async def _create(self, origin: tuple[str, str, int]) -> _Connection:
        """Open one connection to ``origin`` (TCP, then TLS for https, each timed) and
        count it as open."""
        number = next(self._numbers)
        began = time.monotonic_ns()
        if origin[0] == "https" and self._ssl is None:
            self._ssl = (self._tls or Tls()).context()
        transport, connection, tls_ns = await open_timed(
            self.loop, lambda: _Connection(self, origin, number), origin, self._ssl
        )
        if transport.is_closing():  # the server closed it before this coroutine went on
            raise ClosedEarly("closed as it opened")
        connection.transport, connection.tls_ns = transport, tls_ns
        connection.connect_ns = time.monotonic_ns() - began
        self._all.add(connection)
        return connection

    def adopt(
        self,
        transport: asyncio.Transport,
        origin: tuple[str, str, int],
        number: int,
        connect_ns: int,
        tls_ns: int,
        waiting: Any = None,
    ) -> None:
        """Take a connection opened elsewhere (TLS whose ALPN chose HTTP/1.1) and send
        ``waiting``'s request on it (anything with ``request``, ``context`` and
        ``deadline``), or keep it idle."""
        connection = _Connection(self, origin, number)
        transport.set_protocol(connection)
        connection.connection_made(transport)
        self._all.add(connection)
        if waiting is None or waiting.context is None:
            connection.reused = True  # idle until used, so it may be stale by then
            self._idle.setdefault(origin, []).append(connection)
            return
        connection.connect_ns, connection.tls_ns = connect_ns, tls_ns
        context, waiting.context = waiting.context, None
        connection.start(waiting.request, context, waiting.deadline)

    async def _connect(self, pending: _Pending) -> None:
        try:
            connection = await self._create(pending.request.origin)
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            if pending in self._pending:
                self._pending.discard(pending)
                pending.timer.cancel()
                self.on_done(pending.context, 0, 0, _connect_failure(exc), None, None)
            return
        if pending not in self._pending:  # it timed out while connecting: keep the connection
            connection.connect_ns = connection.tls_ns = 0  # nobody waits for it now
            self._idle.setdefault(connection.origin, []).append(connection)
            return
        self._pending.discard(pending)
        pending.timer.cancel()
        connection.start(pending.request, pending.context, pending.deadline)

    def _close_one_idle(self) -> None:
        for connections in self._idle.values():
            if connections:
                connections.pop().transport.close()
                return

    def _forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        idle = self._idle.get(connection.origin)
        if idle and connection in idle:
            idle.remove(connection)

    def close(self) -> None:
        """Close every connection; requests still in flight end ``ABANDONED``."""
        for pending in list(self._pending):
            self._pending.discard(pending)
            pending.timer.cancel()
            self.on_done(pending.context, 0, 0, Ending.ABANDONED, None, None)
        for connection in list(self._all):
            connection._finish(0, Ending.ABANDONED)
            connection.transport.abort()
