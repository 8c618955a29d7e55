"""Scripted TCP servers on loopback, for tests of how clients meet odd peers."""

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def scripted_server(handle: Callable[[socket.socket], None]) -> Iterator[tuple[str, list]]:
    """A TCP server on loopback running ``handle`` for each connection on its own thread."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/", accepted
    finally:
        server.close()
        for conn in accepted:  # handlers see the end of the stream and close their sockets
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def read_request(conn: socket.socket) -> bool:
    """Read one request's head; False when the peer (or the test) ended the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        try:
            chunk = conn.recv(65536)
        except OSError:
            return False
        if not chunk:
            return False
        data += chunk
    return True


# respond(h2, stream id, the stream ids so far, write): answer a complete request (write
# sends the h2 state's frames, then the raw bytes given); False closes the connection.
Respond = Callable[..., bool]


@contextmanager
def h2_server(
    respond: Respond, settings: dict | None = None, on_headers: bool = False, close_first: int = 0
) -> Iterator[tuple[str, list]]:
    """A scripted HTTP/2 server on loopback (h2c with prior knowledge, h2's state machine):
    ``respond`` is called for each request once it has all come in (``on_headers``: once
    its headers have, its body unread); ``settings`` are the server's SETTINGS. Yields its
    URL and the stream ids of the requests, in order. The first ``close_first``
    connections are closed as soon as they are accepted."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import RequestReceived, StreamEnded
    from h2.exceptions import ProtocolError
    from h2.settings import Settings

    requests: list[int] = []
    order: list[socket.socket] = []  # the server's sockets as accepted (set below)

    def handle(sock: socket.socket) -> None:
        if order.index(sock) < close_first:  # (handlers may start in another order)
            sock.close()
            return
        h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        if settings:
            h2.local_settings = Settings(client=False, initial_values=settings)
        h2.initiate_connection()

        def write(raw: bytes = b"") -> None:
            sock.sendall(h2.data_to_send() + raw)

        with sock:
            write()
            while True:
                try:
                    data = sock.recv(65536)
                    events = h2.receive_data(data) if data else None
                except (OSError, ProtocolError):
                    return
                if events is None:
                    return
                for event in events:
                    if isinstance(event, RequestReceived if on_headers else StreamEnded):
                        requests.append(event.stream_id)
                        if not respond(h2, event.stream_id, requests, write):
                            write()
                            return
                write()

    with scripted_server(handle) as (url, accepted):
        order = accepted  # the list the server appends each socket to, before its handler
        yield url, requests
