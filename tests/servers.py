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
