"""The blocking target: a WSGI app on gunicorn's gthread worker, one process, N threads.

Each request holds one of the N threads for its whole life, including the
blocking ``requests`` call to the dependency (one ``requests.Session`` per
thread, so connections are reused). When all N threads are stuck, every
other request, ``/healthz`` included, waits in the worker's queue: that
queue is the blast radius.

``GET /call/{i}``: 200 when the dependency's ``/endpoint/{i}`` answers 2xx,
504 when the dependency timeout fires, 502 on any other dependency failure.
``GET /stats``: busy threads, total threads, queued and in-flight requests.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import requests
from gunicorn.app.base import BaseApplication

from blastradius.targets.runtime import raise_nofile_limit
from blastradius.targets.serving import announce, url_of
from blastradius.targets.validation import validate_dependency_url, validate_timeout

_STATUS_TEXT = {
    200: "200 OK",
    404: "404 Not Found",
    502: "502 Bad Gateway",
    504: "504 Gateway Timeout",
}
# Connections gunicorn keeps open at once; beyond the threads they wait in its queue.
_WORKER_CONNECTIONS = 20_000


@dataclass(frozen=True)
class BlockingConfig:
    """The blocking target: its dependency, thread count and dependency timeout."""

    dependency: str
    threads: int = 500
    dependency_timeout_s: float | None = None  # None: wait as long as the dependency takes

    def __post_init__(self) -> None:
        object.__setattr__(self, "dependency", validate_dependency_url(self.dependency))
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads: must be a whole number of at least 1 (got {self.threads})")
        validate_timeout(self.dependency_timeout_s)


class BlockingApp:
    """The WSGI application; ``bind_worker`` lets ``/stats`` see gunicorn's queue."""

    def __init__(self, config: BlockingConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._lock = threading.Lock()
        self._busy = 0
        self._queue_size: Callable[[], int] = lambda: 0

    def bind_worker(self, worker: Any) -> None:
        """Let ``/stats`` read the gthread worker's queue of requests waiting for a thread."""
        work_queue = getattr(getattr(worker, "tpool", None), "_work_queue", None)
        if work_queue is not None:
            self._queue_size = work_queue.qsize

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        with self._lock:
            self._busy += 1
        try:
            status, body, content_type = self._route(environ.get("PATH_INFO", ""))
        finally:
            with self._lock:
                self._busy -= 1
        start_response(
            _STATUS_TEXT.get(status, f"{status} Error"),
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _route(self, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            return 200, b"ok\n", "text/plain"
        if path == "/stats":
            return 200, json.dumps(self.stats()).encode(), "application/json"
        prefix, _, index = path.rpartition("/")
        if prefix == "/call" and index.isdigit():
            status, text = self.call(int(index))
            return status, text.encode(), "text/plain"
        return 404, b"not found\n", "text/plain"

    def stats(self) -> dict[str, int]:
        """Busy and total threads, requests queued for a thread, and in-flight (both)."""
        queued = self._queue_size()
        return {
            "busy_threads": self._busy,
            "total_threads": self.config.threads,
            "queued": queued,
            "in_flight": self._busy + queued,
        }

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, i: int) -> tuple[int, str]:
        """Call the dependency's endpoint i on this thread and map the outcome to a status."""
        url = f"{self.config.dependency}/endpoint/{i}"
        try:
            response = self._session().get(url, timeout=self.config.dependency_timeout_s)
        except requests.Timeout:
            return 504, "dependency timed out\n"
        except requests.RequestException as exc:
            return 502, f"dependency failed: {type(exc).__name__}\n"
        if not response.ok:
            return 502, f"dependency answered {response.status_code}\n"
        return 200, "ok\n"


class _Gunicorn(BaseApplication):
    def __init__(self, app: BlockingApp, sock: socket.socket) -> None:
        self._app, self._sock = app, sock
        super().__init__()

    def load_config(self) -> None:
        url = url_of(self._sock)  # gunicorn closes the fd it is given once it has a dup

        def post_worker_init(worker: Any) -> None:
            self._app.bind_worker(worker)
            announce(url)

        def worker_exit(server: Any, worker: Any) -> None:
            # Threads may be stuck in dependency calls for as long as the dependency takes;
            # interpreter exit would join them, so leave now that gunicorn has cleaned up.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

        options = {
            "bind": [f"fd://{self._sock.fileno()}"],
            "workers": 1,
            "worker_class": "gthread",
            "threads": self._app.config.threads,
            "worker_connections": _WORKER_CONNECTIONS,
            "keepalive": 5,
            "timeout": 0,
            "graceful_timeout": 2,
            "loglevel": "warning",
            "accesslog": None,
            "post_worker_init": post_worker_init,
            "worker_exit": worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> BlockingApp:
        return self._app


def serve(config: BlockingConfig, sock: socket.socket) -> None:
    """Run the blocking target under gunicorn on ``sock`` until SIGINT/SIGTERM."""
    raise_nofile_limit()
    _Gunicorn(BlockingApp(config), sock).run()
