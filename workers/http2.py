"""The generator's HTTP/2 client: streams multiplexed over a bounded pool of connections.

The same design as the HTTP/1.1 client (``workers.client``): asyncio protocols,
completion by callback, one timer per request, and exactly one call of
``on_done(context, status, bytes_in, ending, kept, phases)`` per request.
Frames are the ``h2`` state machine's (python-hyper); nothing here is a
general-purpose client.

- Cleartext is h2c with prior knowledge. Over TLS, ALPN offers ``h2`` and
  ``http/1.1``; an origin whose server picks HTTP/1.1 (or no ALPN at all) is
  sent to over the HTTP/1.1 client from then on, and its rows say ``1.1``.
- Each connection carries at most ``streams`` requests at once, fewer when
  the server's ``SETTINGS_MAX_CONCURRENT_STREAMS`` says so (100 until its
  SETTINGS arrive). A request that finds no free stream opens a connection
  while the pool has fewer than ``max_connections`` to its origin and those
  being opened have no stream left for it; else it waits in line for a
  stream, and one whose deadline passes there was never sent (``NOT_SENT``,
  a ``dropped`` row). The first stream on a new connection carries its
  opening (``connect_ns``); one from the line, the time it waited.
- How a stream ends: ``END_STREAM`` is a response (1xx interim responses
  and trailers are read and passed over); ``RST_STREAM`` is ``BROKEN``, with
  its error code in the phases; a ``GOAWAY`` ends the streams above its last
  id as ``BROKEN`` with its error code (never retried) while those up to it
  complete, and the connection takes no new stream; a connection closed
  mid-stream is ``BROKEN``; a frame that breaks HTTP/2's rules (a body past
  its ``content-length``, say) is a connection error, and every stream on
  that connection ends ``NOT_HTTP``.
- Windows: each stream and the connection receive with a 16 MiB window,
  opened again as the data is read, so a large response does not stall.

``phases`` here: (connection number, connect ns, TLS ns, first byte after the
write or ``NO_BYTE``, ns waited in line for a stream, ``PROTO_2``, the
``RST_STREAM``/``GOAWAY`` error code or ``NO_RESET``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections import deque
from collections.abc import Sequence

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    InformationalResponseReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings
from hpack import Decoder, Encoder
from hpack.table import HeaderTable

from blastradius.workers.client import (
    KEEP_LIMIT,
    NO_BYTE,
    NO_RESET,
    PROTO_2,
    ClosedEarly,
    HttpClient,
    OnDone,
    PreparedRequest,
    _arm,
    _connect_failure,
    _early,
    nodelay,
    open_timed,
)
from blastradius.workers.outcome import Ending
from blastradius.workers.template import Tls

WINDOW = 1 << 24  # the receive window of each stream and of the connection
ASSUMED_STREAMS = 100  # the server's stream limit until its SETTINGS say (RFC 9113 6.5.2)
_CONNECTION_SPECIFIC = (b"connection", b"keep-alive", b"proxy-connection", b"upgrade")
_FRAME_HEAD, _SETTINGS = 9, 4  # a frame's header length; the SETTINGS frame's type
_CACHED = 4096  # requests whose HTTP/2 form is kept (a session's steps are made anew)
Origin = tuple[str, str, int]
# Our header blocks are made right by ``h2_form`` (and tested): h2 need not check them
# again. The server's are checked.
_CONFIG = H2Configuration(
    client_side=True,
    header_encoding=None,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
)


def _status(headers: Sequence[tuple[bytes, bytes]]) -> int:
    for name, value in headers:
        if name == b":status":
            return int(value)
    return 0


def h2_form(request: PreparedRequest) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """``request``'s HTTP/2 header block and body, from its HTTP/1.1 bytes: the request
    line and ``Host`` become pseudo-headers, names are lowercased, and the headers that
    HTTP/2 forbids (``Connection`` and its kind) are left out."""
    head, _, body = request.data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, path, _ = lines[0].split(b" ", 2)
    scheme, _, _ = request.origin
    fields: list[tuple[bytes, bytes]] = []
    authority = b""
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"host":
            authority = value
        elif name == b"te" and value.lower() != b"trailers":
            continue  # HTTP/2 allows TE: trailers only
        elif name not in _CONNECTION_SPECIFIC:
            fields.append((name, value))
    pseudo = [(b":method", method), (b":scheme", scheme.encode()), (b":authority", authority)]
    return [*pseudo, (b":path", path), *fields], body


class _Table(HeaderTable):
    """hpack's header table, counting what is added to it: a header block's bytes mean
    the same headers for as long as the count and the table's size stay the same."""

    version = 0

    def add(self, name: bytes, value: bytes) -> None:
        had = len(self.dynamic_entries)
        super().add(name, value)
        if had or self.dynamic_entries:  # (an entry too big for a table of size 0: no change)
            self.version += 1


class _Encoder(Encoder):
    """hpack's encoder, which encodes a header list once for as long as doing it again
    would make the same bytes: the table unchanged, no size update to send."""

    header_table: _Table

    def __init__(self) -> None:
        super().__init__()
        self.header_table = _Table()
        self._blocks: dict[tuple, tuple[tuple[int, int], bytes]] = {}

    def encode(self, headers, huffman: bool = True) -> bytes:
        key = tuple(headers)
        table = self.header_table
        state = (table.version, table.maxsize)
        hit = self._blocks.get(key)
        if hit is not None and hit[0] == state and not self.table_size_changes:
            return hit[1]
        resized = bool(self.table_size_changes)
        block = super().encode(key, huffman)
        if not resized and (table.version, table.maxsize) == state:
            if len(self._blocks) >= _CACHED:
                self._blocks.clear()
            self._blocks[key] = (state, block)
        return block


class _Decoder(Decoder):
    """hpack's decoder, which decodes a header block once for as long as its bytes mean
    the same headers (the table unchanged, by the block itself too)."""

    header_table: _Table

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size)
        self.header_table = _Table()
        self._lists: dict[tuple[bytes, bool], tuple[tuple[int, int], list]] = {}

    def decode(self, data: bytes, raw: bool = False):
        key = (bytes(data), raw)
        table = self.header_table
        state = (table.version, table.maxsize)
        hit = self._lists.get(key)
        if hit is not None and hit[0] == state:
            return list(hit[1])
        headers = super().decode(data, raw)
        if (table.version, table.maxsize) == state:
            if len(self._lists) >= _CACHED:
                self._lists.clear()
            self._lists[key] = (state, list(headers))
        return headers


class _H2(H2Connection):
    """h2's connection, but one that goes on after a GOAWAY: RFC 9113 6.8 lets the streams
    up to its last id complete, while h2 closes its whole state machine on any GOAWAY
    and then rejects their frames. Its header blocks are encoded and decoded once while
    they mean the same (most of the CPU of a small request, in hpack, otherwise)."""

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config)
        self.encoder = _Encoder()
        self.decoder = _Decoder(self.decoder.max_header_list_size)

    def _receive_goaway_frame(self, frame):
        state = self.state_machine.state
        result = super()._receive_goaway_frame(frame)
        self.state_machine.state = state
        return result


class NotHttp2(OSError):
    """The server answered the connection preface with something other than HTTP/2."""


def _open_failure(exc: BaseException) -> Ending:
    """How a request ended whose connection did not open: not HTTP/2, silent after the
    preface, or as ``workers.client`` says (closed early, TLS, refused)."""
    if isinstance(exc, NotHttp2):
        return Ending.NOT_HTTP
    if isinstance(exc, TimeoutError):
        return Ending.DEADLINE
    return _connect_failure(exc)


class _Stream:
    """One request on a connection, from its write to its end."""

    __slots__ = (
        "body",
        "bytes_in",
        "connect_ns",
        "context",
        "deadline",
        "first_ns",
        "headers",
        "kept_body",
        "request",
        "status",
        "timer",
        "tls_ns",
        "waited_ns",
        "written_ns",
    )

    def __init__(
        self, request: PreparedRequest, context: object, deadline: float, waited_ns: int
    ) -> None:
        self.request, self.context, self.deadline = request, context, deadline
        self.waited_ns, self.connect_ns, self.tls_ns = waited_ns, 0, 0
        self.status = self.bytes_in = self.first_ns = self.written_ns = 0
        self.body = b""  # what of the request's body the window has not let out yet
        self.headers: list[tuple[bytes, bytes]] = []
        self.kept_body: list[bytes] = []
        self.timer: asyncio.TimerHandle | None = None


class _Waiting:
    """A request in line for a stream (or, ``bound``, for the connection it opens)."""

    __slots__ = ("context", "deadline", "request", "since_ns", "timer")

    timer: asyncio.TimerHandle

    def __init__(self, request: PreparedRequest, context: object, deadline: float) -> None:
        self.request, self.context, self.deadline = request, context, deadline
        self.since_ns = time.monotonic_ns()


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection: up to ``limit`` streams at once."""

    transport: asyncio.Transport

    def __init__(self, client: Http2Client, origin: Origin, number: int) -> None:
        self.client, self.origin, self.number = client, origin, number
        self.h2 = _H2(_CONFIG)
        self.streams: dict[int, _Stream] = {}
        self.limit = min(client.streams, ASSUMED_STREAMS)
        self.usable = True  # no GOAWAY yet, not closed: it may take new streams
        self.listed = False  # in the client's line of connections with a free stream
        self.connect_ns = self.tls_ns = 0  # opening it: the first stream's phases
        self.greeting: bytes | None = b""  # the server's first bytes, until a frame's head
        # What came before our preface went out (the server speaks first): read after it.
        self.early: bytes | None = b""
        # Its SETTINGS came (None), or it never will (the exception): it is open then.
        self.greeted: asyncio.Future[None] = client.loop.create_future()
        self.ready = False  # it takes streams (the one that waited for it went first)

    def begin(self) -> None:
        """Send the connection preface and our SETTINGS (on TLS, once the session is up)."""
        h2 = self.h2
        h2.local_settings = Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: 0,
                SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
                SettingCodes.MAX_CONCURRENT_STREAMS: 0,  # no pushed streams
            },
        )
        h2.initiate_connection()
        h2.increment_flow_control_window(WINDOW - 65_535)
        self.transport.write(h2.data_to_send())
        early, self.early = self.early, None
        if early:
            self.data_received(early)

    @property
    def free(self) -> bool:
        """Whether it may take one more stream now."""
        return self.usable and len(self.streams) < self.limit

    def start(
        self, request: PreparedRequest, context: object, deadline: float, waited: int
    ) -> None:
        """Write ``request`` on a new stream; it must complete by ``deadline``."""
        stream = _Stream(request, context, deadline, waited)
        if self.connect_ns:  # the stream that waited for the connection to open
            stream.connect_ns, stream.tls_ns = self.connect_ns, self.tls_ns
            self.connect_ns = self.tls_ns = 0
        headers, body = self.client.form(request)
        h2 = self.h2
        sid = h2.get_next_available_stream_id()
        self.streams[sid] = stream
        stream.timer = _arm(self.client.loop, deadline, self._time_out, sid)
        stream.written_ns = time.monotonic_ns()
        h2.send_headers(sid, headers, end_stream=not body)
        if body:
            stream.body = body
            self._send_body(sid, stream)
        self.transport.write(h2.data_to_send())

    def _send_body(self, sid: int, stream: _Stream) -> None:
        h2 = self.h2
        while stream.body:
            size = min(h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
            if size <= 0:
                return  # the rest goes when the peer opens the window (WindowUpdated)
            chunk, stream.body = stream.body[:size], stream.body[size:]
            h2.send_data(sid, chunk, end_stream=not stream.body)

    def _time_out(self, sid: int) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        if _early(stream.deadline):
            stream.timer = _arm(self.client.loop, stream.deadline, self._time_out, sid)
            return
        if not self.transport.is_closing():  # the stream is closed before its slot is free
            with contextlib.suppress(ProtocolError):  # (it closed on the peer's side meanwhile)
                self.h2.reset_stream(sid, ErrorCodes.CANCEL)
            self.transport.write(self.h2.data_to_send())
        self._end(sid, 0, Ending.DEADLINE)

    # --- asyncio protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream's: TCP or TLS
        nodelay(transport)

    def data_received(self, data: bytes) -> None:
        if self.early is not None:  # before the preface: h2 must not answer it yet
            self.early += data
            return
        if self.greeting is not None:  # the server's first frame: SETTINGS, or not HTTP/2
            data = self.greeting = self.greeting + data
            if len(data) < _FRAME_HEAD:
                return
            self.greeting = None
            if data[3] != _SETTINGS:  # an HTTP/1.1 answer, say (h2 would wait for its frame)
                self._greet(NotHttp2("its first frame is not SETTINGS"))
                self._end_all(Ending.NOT_HTTP)
                self.transport.abort()
                return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:  # a connection error: h2 has queued its GOAWAY
            self._greet(NotHttp2("it broke HTTP/2's rules"))
            self._end_all(Ending.NOT_HTTP)
            self.transport.write(self.h2.data_to_send())
            self.transport.close()
            return
        streams = self.streams
        for event in events:
            if isinstance(event, DataReceived):
                sid = event.stream_id
                self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
                stream = streams.get(sid)
                if stream is not None:
                    data = event.data
                    if stream.request.keep and stream.bytes_in < KEEP_LIMIT:
                        stream.kept_body.append(data[: KEEP_LIMIT - stream.bytes_in])
                    stream.bytes_in += len(data)
                    if event.stream_ended is not None:
                        self._end(sid, stream.status, Ending.RESPONSE)
            elif isinstance(event, ResponseReceived):
                stream = streams.get(event.stream_id)
                if stream is not None:
                    if not stream.first_ns:
                        stream.first_ns = time.monotonic_ns()
                    stream.status = _status(event.headers)
                    if stream.request.keep:
                        stream.headers = [h for h in event.headers if h[0][:1] != b":"]
                    if event.stream_ended is not None:
                        self._end(event.stream_id, stream.status, Ending.RESPONSE)
            elif isinstance(event, StreamEnded):
                stream = streams.get(event.stream_id)
                if stream is not None:  # (after trailers; data and headers end above)
                    self._end(event.stream_id, stream.status, Ending.RESPONSE)
            elif isinstance(event, InformationalResponseReceived):
                stream = streams.get(event.stream_id)
                if stream is not None and not stream.first_ns:
                    stream.first_ns = time.monotonic_ns()
            elif isinstance(event, StreamReset):
                self._end(event.stream_id, 0, Ending.BROKEN, event.error_code)
            elif isinstance(event, ConnectionTerminated):
                self._goaway(event.last_stream_id or 0, int(event.error_code or 0))
            elif isinstance(event, RemoteSettingsChanged):
                self._settings()
            elif isinstance(event, WindowUpdated):
                self._resume_bodies(event.stream_id)
        out = self.h2.data_to_send()
        if out:
            self.transport.write(out)
        if not self.usable and not self.streams and not self.transport.is_closing():
            self.transport.close()  # after a GOAWAY, once its last stream is done

    def connection_lost(self, exc: Exception | None) -> None:
        self._greet(ClosedEarly("closed before its SETTINGS"))
        self.client._forget(self)
        self._end_all(Ending.BROKEN)

    def _greet(self, failure: Exception | None = None) -> None:
        if self.greeted.done():  # (or cancelled: nobody waits any more)
            return
        if failure is None:
            self.greeted.set_result(None)
        else:
            self.greeted.set_exception(failure)

    # --- events ---------------------------------------------------------------------------

    def _settings(self) -> None:
        self.limit = min(self.client.streams, self.h2.remote_settings.max_concurrent_streams)
        self._greet()
        self.client._freed(self)

    def _resume_bodies(self, sid: int) -> None:
        for each, stream in list(self.streams.items()):
            if stream.body and (sid == 0 or sid == each):
                self._send_body(each, stream)

    def _goaway(self, last: int, code: int) -> None:
        self.client._retire(self)
        for sid in [sid for sid in self.streams if sid > last]:
            self._end(sid, 0, Ending.BROKEN, code)

    # --- the one exit of a stream ----------------------------------------------------------

    def _end(self, sid: int, status: int, ending: Ending, reset: int = NO_RESET) -> None:
        stream = self.streams.pop(sid, None)
        if stream is None:
            return
        if stream.timer is not None:
            stream.timer.cancel()
        if stream.body and ending == Ending.RESPONSE:  # answered before its body was out:
            with contextlib.suppress(ProtocolError):  # its half of the stream closes too
                self.h2.reset_stream(sid, ErrorCodes.NO_ERROR)
        kept = None
        if stream.request.keep and ending == Ending.RESPONSE:
            kept = (tuple(stream.headers), b"".join(stream.kept_body))
        first = stream.first_ns - stream.written_ns if stream.first_ns else NO_BYTE
        phases = (
            self.number,
            stream.connect_ns,
            stream.tls_ns,
            first,
            stream.waited_ns,
            PROTO_2,
            int(reset),
        )
        self.client.on_done(stream.context, status, stream.bytes_in, ending, kept, phases)
        self.client._freed(self)

    def _end_all(self, ending: Ending) -> None:
        self.usable = False
        for sid in list(self.streams):
            self._end(sid, 0, ending)


class Http2Client:
    """Sends prepared requests as HTTP/2 streams over at most ``max_connections``
    connections to each origin, ``streams`` at a time on each.

    ``send`` has the HTTP/1.1 client's contract (``workers.client.HttpClient``); the
    caller bounds the requests in flight. An https origin whose server does not pick
    ``h2`` by ALPN goes to the HTTP/1.1 client, numbered in the same series; so does
    every http origin without ``h2c`` (``http: auto``).
    """

    def __init__(
        self,
        max_connections: int,
        streams: int,
        timeout_s: float,
        on_done: OnDone,
        tls: Tls | None = None,
        max_in_flight: int = 10_000,
        h2c: bool = True,
        timeout_from_send: bool = False,
    ) -> None:
        self.max_connections, self.streams, self.h2c = max_connections, streams, h2c
        # A service calling its dependency counts its timeout from the call, the wait for
        # a stream included; the generator, from the write (a stream is its send).
        self.timeout_from_send = timeout_from_send
        self.timeout_s, self.on_done = timeout_s, on_done
        self.loop = asyncio.get_running_loop()
        self._numbers = itertools.count(1)
        self._http1 = HttpClient(max_in_flight, timeout_s, on_done, tls, self._numbers)
        self._h1_origins: set[Origin] = set()
        self._tls = tls
        self._ssl: ssl.SSLContext | None = None
        self._live: dict[Origin, set[_Connection]] = {}  # usable, or opening (counted)
        self._opening: dict[Origin, int] = {}
        self._free: dict[Origin, deque[_Connection]] = {}  # may have a free stream
        self._line: dict[Origin, deque[_Waiting]] = {}  # waiting for a stream
        self._bound: set[_Waiting] = set()  # waiting for the connection they open
        self._all: set[_Connection] = set()
        self._forms: dict[bytes, tuple[list[tuple[bytes, bytes]], bytes]] = {}

    def form(self, request: PreparedRequest) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """``request``'s header block and body (kept for the requests sent again and again)."""
        form = self._forms.get(request.data)
        if form is None:
            form = h2_form(request)
            if len(self._forms) < _CACHED and not request.keep:
                self._forms[request.data] = form
        return form

    async def warm(
        self, prepared: Sequence[PreparedRequest], per_origin: int, timeout_s: float
    ) -> int:
        """Open up to ``per_origin`` connections to each origin before the start (failures
        are ignored); how many opened."""
        origins = {request.origin for request in prepared}
        if not self.h2c:  # cleartext is HTTP/1.1 then
            http1 = [request for request in prepared if request.origin[0] == "http"]
            origins -= {request.origin for request in http1}
            self._h1_origins |= {request.origin for request in http1}
            if http1:
                await self._http1.warm(http1, per_origin, timeout_s)
        count = min(per_origin, self.max_connections)

        async def one(origin: Origin) -> bool:
            self._opening[origin] = self._opening.get(origin, 0) + 1
            try:
                connection = await self._create(origin)
            except (OSError, ssl.SSLError, ssl.CertificateError):
                return False
            finally:
                self._opening[origin] -= 1
            if connection is not None:
                connection.connect_ns = connection.tls_ns = 0  # opened before any request
                connection.ready = True
                self._freed(connection)
            return True

        attempts = [one(origin) for origin in origins for _ in range(max(count, 0))]
        results = await asyncio.wait_for(asyncio.gather(*attempts), timeout_s)
        return sum(results)

    def send(self, request: PreparedRequest, context: object) -> None:
        """Send one request; ``on_done`` is called exactly once with its outcome."""
        origin = request.origin
        if origin in self._h1_origins:
            self._http1.send(request, context)
            return
        if not self.h2c and origin[0] == "http":  # cleartext is HTTP/1.1 then
            self._h1_origins.add(origin)
            self._http1.send(request, context)
            return
        deadline = time.monotonic() + self.timeout_s
        free = self._free.get(origin)
        while free:
            connection = free[0]
            if connection.free:
                connection.start(request, context, deadline, 0)
                if not connection.free:
                    free.popleft()
                    connection.listed = False
                else:
                    free.rotate(-1)  # spread streams over the connections
                return
            free.popleft()
            connection.listed = False
        waiting = _Waiting(request, context, deadline)
        line = self._line.setdefault(origin, deque())
        # A connection being opened will take its streams' worth of the line: a burst at
        # the start waits for it rather than opening a connection a request.
        room = self._opening.get(origin, 0) * min(self.streams, ASSUMED_STREAMS) > len(line)
        if room or self._count(origin) >= self.max_connections:
            waiting.timer = _arm(self.loop, deadline, self._expired, waiting)
            line.append(waiting)
        else:
            self._open(waiting)

    def _count(self, origin: Origin) -> int:
        return len(self._live.get(origin, ())) + self._opening.get(origin, 0)

    def _expired(self, waiting: _Waiting) -> None:
        if _early(waiting.deadline):
            waiting.timer = _arm(self.loop, waiting.deadline, self._expired, waiting)
            return
        if waiting.context is None:
            return
        context, waiting.context = waiting.context, None
        ending = Ending.DEADLINE if waiting in self._bound else Ending.NOT_SENT
        self._bound.discard(waiting)
        self.on_done(context, 0, 0, ending, None, None)

    def _open(self, waiting: _Waiting) -> None:
        origin = waiting.request.origin
        waiting.timer = _arm(self.loop, waiting.deadline, self._expired, waiting)
        self._bound.add(waiting)
        self._opening[origin] = self._opening.get(origin, 0) + 1
        self.loop.create_task(self._connect(waiting))

    async def _connect(self, waiting: _Waiting) -> None:
        origin = waiting.request.origin
        try:
            connection = await self._create(origin, waiting)
        except (OSError, ssl.SSLError, ssl.CertificateError) as exc:
            self._opening[origin] -= 1
            if waiting in self._bound:
                self._bound.discard(waiting)
                waiting.timer.cancel()
                context, waiting.context = waiting.context, None
                self.on_done(context, 0, 0, _open_failure(exc), None, None)
            self._open_for_line(origin)
            return
        self._opening[origin] -= 1
        if connection is None:  # HTTP/1.1 by ALPN: the HTTP/1.1 client took the request
            return
        connection.ready = True
        if waiting in self._bound:
            self._bound.discard(waiting)
            waiting.timer.cancel()
            context, waiting.context = waiting.context, None
            connection.start(waiting.request, context, waiting.deadline, 0)
        else:  # it timed out while connecting: nobody waits for the opening any more
            connection.connect_ns = connection.tls_ns = 0
        self._freed(connection)

    async def _create(self, origin: Origin, waiting: _Waiting | None = None) -> _Connection | None:
        """Open one connection to ``origin`` (TCP, then TLS offering h2 by ALPN); None when
        the server picked HTTP/1.1, whose client then has the connection (and ``waiting``)."""
        number = next(self._numbers)
        began = time.monotonic_ns()
        if origin[0] == "https" and self._ssl is None:
            self._ssl = (self._tls or Tls()).context()
            self._ssl.set_alpn_protocols(["h2", "http/1.1"])
        transport, connection, tls_ns = await open_timed(
            self.loop, lambda: _Connection(self, origin, number), origin, self._ssl
        )
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            self._h1_origins.add(origin)
            if waiting is not None and waiting in self._bound:
                self._bound.discard(waiting)
                waiting.timer.cancel()
            else:
                waiting = None  # its deadline passed while connecting: the line's now
            connect_ns = time.monotonic_ns() - began
            self._http1.adopt(transport, origin, number, connect_ns, tls_ns, waiting)
            self._to_http1(origin)
            return None
        connection.transport, connection.tls_ns = transport, tls_ns
        # Open once the server's SETTINGS came: its stream limit is known before a stream
        # is sent (none is refused for going over it), and a server that does not speak
        # HTTP/2 is told apart before any request is on it.
        connection.begin()
        self._all.add(connection)
        try:
            await asyncio.wait_for(connection.greeted, self.timeout_s)
            if connection.transport.is_closing():  # its SETTINGS came, and then its end
                raise ClosedEarly("closed as it opened")
        except BaseException:
            self._all.discard(connection)
            connection.transport.abort()
            raise
        connection.connect_ns = time.monotonic_ns() - began
        self._live.setdefault(origin, set()).add(connection)
        return connection

    def _to_http1(self, origin: Origin) -> None:
        """Those waiting for a stream to an origin that speaks HTTP/1.1 go to its client."""
        for waiting in self._line.pop(origin, deque()):
            if waiting.context is not None:
                waiting.timer.cancel()
                context, waiting.context = waiting.context, None
                self._http1.send(waiting.request, context)

    def _freed(self, connection: _Connection) -> None:
        """A stream of ``connection`` ended or its limit changed: the line goes first."""
        if not connection.ready:
            return
        line = self._line.get(connection.origin)
        while line and connection.free:
            waiting = line.popleft()
            if waiting.context is None:
                continue  # its deadline passed in line (recorded then)
            waiting.timer.cancel()
            context, waiting.context = waiting.context, None
            # Sent now, it gets the whole timeout, as the generator's line gives it.
            now = time.monotonic_ns()
            deadline = now / 1e9 + self.timeout_s
            if self.timeout_from_send:
                deadline = waiting.deadline
            connection.start(waiting.request, context, deadline, now - waiting.since_ns)
        if connection.free and not connection.listed:
            connection.listed = True
            self._free.setdefault(connection.origin, deque()).append(connection)

    def _retire(self, connection: _Connection) -> None:
        """``connection`` takes no new stream (a GOAWAY came, or it closed); an open one's
        place in the pool goes to the line (one still opening is ``_connect``'s)."""
        connection.usable = False
        live = self._live.get(connection.origin, set())
        if connection in live:
            live.discard(connection)
            self._open_for_line(connection.origin)

    def _open_for_line(self, origin: Origin) -> None:
        """Open a connection for the first in line, if the pool has room for one."""
        line = self._line.get(origin)
        while line and line[0].context is None:
            line.popleft()
        if line and self._count(origin) < self.max_connections:
            waiting = line.popleft()
            waiting.timer.cancel()
            self._open(waiting)

    def _forget(self, connection: _Connection) -> None:
        self._all.discard(connection)
        self._retire(connection)

    def close(self) -> None:
        """Close every connection; requests not finished end ``ABANDONED``."""
        for waiting in [*self._bound, *(w for line in self._line.values() for w in line)]:
            if waiting.context is not None:
                waiting.timer.cancel()
                context, waiting.context = waiting.context, None
                self.on_done(context, 0, 0, Ending.ABANDONED, None, None)
        self._bound.clear()
        self._line.clear()
        for connection in list(self._all):
            connection._end_all(Ending.ABANDONED)
            connection.transport.abort()
        self._http1.close()
