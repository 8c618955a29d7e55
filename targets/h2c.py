"""HTTP/2 in cleartext (h2c, with prior knowledge) beside HTTP/1.1 on one port.

A reference service whose application carries a ``Handler`` (``app[H2C]``) serves a
connection that opens with HTTP/2's preface on h2's state machine, with
``SETTINGS_MAX_CONCURRENT_STREAMS`` at ``MAX_STREAMS``; any other connection goes to
its aiohttp application on the same port, as before. Over HTTP/2 each request is a
task of its own, cancelled when the client resets its stream or the connection
closes. Only what the handler answers is served over HTTP/2.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from aiohttp import web
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_STREAMS = 100  # what most servers allow (nginx 128, Envoy 100 upstream, Go 250)
# (method, path) -> (status, content type, body)
Handler = Callable[[str, str], Awaitable[tuple[int, str, bytes]]]
H2C = web.AppKey[Handler]("h2c")


class Sniffer(asyncio.Protocol):
    """A new connection, until its first bytes say which protocol serves it."""

    def __init__(self, http1: Callable[[], asyncio.Protocol], handler: Handler) -> None:
        self.http1, self.handler, self.head = http1, handler, b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.head += data
        if len(self.head) < len(PREFACE) and PREFACE.startswith(self.head):
            return  # it may yet be the preface
        h2c = self.head.startswith(PREFACE)
        protocol = _Http2(self.handler) if h2c else self.http1()
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        protocol.data_received(self.head)


class _Http2(asyncio.Protocol):
    """One h2c connection: each request answered by the handler in a task of its own."""

    transport: asyncio.Transport

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.requests: dict[int, tuple[str, str]] = {}  # stream -> (method, path), until ended
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.window = asyncio.Event()  # set when the peer opens a window

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.h2.local_settings = Settings(
            client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS}
        )
        self.h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            self._flush()
            self.transport.close()
            return
        for event in events:
            if isinstance(event, RequestReceived):
                headers = dict(event.headers or ())
                method = headers.get(b":method", b"").decode("latin-1")
                path = headers.get(b":path", b"").decode("latin-1")
                self.requests[event.stream_id or 0] = (method, path)
            elif isinstance(event, DataReceived):
                self.h2.acknowledge_received_data(
                    event.flow_controlled_length or 0, event.stream_id or 0
                )
            elif isinstance(event, StreamEnded):
                sid = event.stream_id or 0
                method, path = self.requests.pop(sid, ("", ""))
                task = asyncio.get_running_loop().create_task(self._respond(sid, method, path))
                self.tasks[sid] = task
            elif isinstance(event, StreamReset):
                sid = event.stream_id or 0
                self.requests.pop(sid, None)
                if sid in self.tasks:
                    self.tasks.pop(sid).cancel()
            elif isinstance(event, WindowUpdated):
                self.window.set()
            elif isinstance(event, ConnectionTerminated):
                self.transport.close()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.tasks.clear()
        self.window.set()

    async def _respond(self, sid: int, method: str, path: str) -> None:
        try:
            status, content_type, body = await self.handler(method, path)
            headers = [(":status", str(status)), ("content-type", content_type)]
            headers.append(("content-length", str(len(body))))
            with contextlib.suppress(ProtocolError):  # (reset or closed meanwhile)
                self.h2.send_headers(sid, headers, end_stream=not body)
                while body and not self.transport.is_closing():
                    size = min(
                        self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size
                    )
                    if size <= 0:
                        self._flush()
                        self.window.clear()
                        await self.window.wait()
                        continue
                    chunk, body = body[:size], body[size:]
                    self.h2.send_data(sid, chunk, end_stream=not body)
            self._flush()
        except Exception:  # a handler that failed: its stream is reset, as a 500 would be
            with contextlib.suppress(ProtocolError):
                self.h2.reset_stream(sid, ErrorCodes.INTERNAL_ERROR)
            self._flush()
        finally:
            self.tasks.pop(sid, None)

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)
