"""The blocking target: a WSGI app on gunicorn's gthread worker, one process, N threads.

Each request holds one of the N threads for its whole life, including the
blocking ``requests`` call to the dependency (one ``requests.Session`` per
thread, so connections are reused). When all N threads are stuck, every
other request, ``/healthz`` included, waits in the worker's queue: that
queue is the blast radius.

``GET /call/{i}``: 200 when the dependency's ``/endpoint/{i}`` answers 2xx,
504 when the dependency timeout fires, 502 on any other dependency failure.
``GET /stats``: busy threads, total threads, queued and in-flight requests, and the
patterns' counts; ``GET /events``: the patterns' time-stamped events.

With ``patterns`` (``targets/patterns.py``), each call goes through them
(``targets/guarded.py``); ``shed`` puts a ``Line`` in place of the worker's queue of
requests waiting for a thread, so how long each waited is known when a thread takes it.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from gunicorn.app.base import BaseApplication

from blastradius.targets.guarded import Answer, Guards
from blastradius.targets.guards import Line, parse_deadline
from blastradius.targets.patterns import DEADLINE_HEADER, Patterns
from blastradius.targets.runtime import raise_nofile_limit
from blastradius.targets.serving import announce, url_of
from blastradius.targets.validation import validate_dependency_url, validate_timeout

_STATUS_TEXT = {
    200: "200 OK",
    404: "404 Not Found",
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
    504: "504 Gateway Timeout",
}
_DEADLINE = "HTTP_" + DEADLINE_HEADER.upper().replace("-", "_")  # its WSGI name
# Connections gunicorn keeps open at once; beyond the threads they wait in its queue.
_WORKER_CONNECTIONS = 20_000


@dataclass(frozen=True)
class BlockingConfig:
    """The blocking target: its dependency, thread count and dependency timeout."""

    dependency: str
    threads: int = 500
    dependency_timeout_s: float | None = None  # None: wait as long as the dependency takes
    patterns: Patterns = field(default_factory=Patterns)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dependency", validate_dependency_url(self.dependency))
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f"threads: must be a whole number of at least 1 (got {self.threads})")
        validate_timeout(self.dependency_timeout_s)


class LineQueue:
    """The gthread worker's queue of requests waiting for a thread, kept as a ``Line``
    (first or last in, first out): the thread that takes a request learns how long it
    waited (``waited_ns``, on that thread), before it reads a byte of it."""

    def __init__(self, line: Line[Any]) -> None:
        self.line = line
        self._ready = threading.Condition()
        self._stopping = False  # the pool's None: every thread is to stop
        self._local = threading.local()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        with self._ready:
            if item is None:
                self._stopping = True
            else:
                self.line.put(item)
            self._ready.notify()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self._ready:
            while True:
                taken = self.line.take()
                if taken is not None:
                    item, self._local.waited_ns = taken
                    return item
                if self._stopping:
                    return None
                if not block:
                    raise queue.Empty
                self._ready.wait()

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def qsize(self) -> int:
        return len(self.line)

    def waited_ns(self) -> int:
        """How long the request this thread is handling waited for it."""
        return getattr(self._local, "waited_ns", 0)


class BlockingApp:
    """The WSGI application; ``bind_worker`` lets ``/stats`` see gunicorn's queue."""

    def __init__(self, config: BlockingConfig) -> None:
        self.config = config
        self._local = threading.local()
        self._lock = threading.Lock()
        self._busy = 0
        self._queue_size: Callable[[], int] = lambda: 0
        self.guards = Guards(config.patterns, config.dependency_timeout_s)
        self.line: LineQueue | None = None

    def bind_worker(self, worker: Any) -> None:
        """Let ``/stats`` read the gthread worker's queue of requests waiting for a thread;
        with ``shed``, make that queue a ``Line`` (before the pool has any thread)."""
        pool = getattr(worker, "tpool", None)
        if pool is not None and self.guards.line is not None:
            self.line = pool._work_queue = LineQueue(self.guards.line)
        work_queue = getattr(pool, "_work_queue", None)
        if work_queue is not None:
            self._queue_size = work_queue.qsize

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        with self._lock:
            self._busy += 1
        try:
            status, body, content_type = self._route(environ)
        finally:
            with self._lock:
                self._busy -= 1
        start_response(
            _STATUS_TEXT.get(status, f"{status} Error"),
            [("Content-Type", content_type), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _route(self, environ: dict) -> tuple[int, bytes, str]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return 200, b"ok\n", "text/plain"
        if path == "/stats":
            return 200, json.dumps(self.stats()).encode(), "application/json"
        if path == "/events":
            return 200, json.dumps(self.guards.events.snapshot()).encode(), "application/json"
        prefix, _, index = path.rpartition("/")
        if prefix == "/call" and index.isdigit():
            line = self.guards.line
            if self.line is not None and line is not None and line.too_long(self.line.waited_ns()):
                return 503, b"shed: waited too long for a thread\n", "text/plain"
            deadline = parse_deadline(environ.get(_DEADLINE))
            status, text = self.call(int(index), deadline)
            return status, text.encode(), "text/plain"
        return 404, b"not found\n", "text/plain"

    def stats(self) -> dict[str, Any]:
        """Busy and total threads, requests queued for a thread, in-flight (both), and
        the patterns' counts."""
        queued = self._queue_size()
        found: dict[str, Any] = {
            "busy_threads": self._busy,
            "total_threads": self.config.threads,
            "queued": queued,
            "in_flight": self._busy + queued,
        }
        if self.config.patterns:
            found["patterns"] = self.guards.stats()
        return found

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def call(self, i: int, deadline_ns: int | None = None) -> Answer:
        """Call the dependency's endpoint i on this thread, through the patterns."""
        guards = self.guards
        admission = guards.admit(i, deadline_ns)
        if isinstance(admission, tuple):
            return admission
        answer = None
        try:
            while True:
                attempt = guards.attempt(admission)
                if isinstance(attempt, tuple):
                    answer = attempt
                    break
                answer = self._call_once(i, attempt.timeout_s)
                guards.attempted(admission, attempt, answer[0])
                wait = guards.again(admission, answer[0])
                if wait is None:
                    break
                time.sleep(wait)
        finally:
            guards.finish(admission, None if answer is None else answer[0])
        return answer

    def _call_once(self, i: int, timeout_s: float | None) -> Answer:
        """Call the dependency's endpoint i and map the outcome to a status."""
        url = f"{self.config.dependency}/endpoint/{i}"
        try:
            response = self._session().get(url, timeout=timeout_s)
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
