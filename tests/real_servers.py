"""Real HTTP servers this project did not write, started on 127.0.0.1 for the client's tests.

Each yields its base URL once it answers. gunicorn, uvicorn and aiohttp get a
listening socket from the test (no port race); ``http.server`` and nginx report or take
their port. nginx is used where installed (Debian's package) and skipped
otherwise.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

APPS = Path(__file__).parent / "apps"
READY_TIMEOUT_S = 60.0


def _listener(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.set_inheritable(True)
    return sock


def _wait_answering(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {READY_TIMEOUT_S:.0f}s")


def _wait_line(process: subprocess.Popen, text: str) -> None:
    """Wait until the process prints a line holding ``text`` (read on a thread: a buffered
    pipe may hold several lines at once, which ``select`` cannot see)."""
    found = threading.Event()

    def read() -> None:
        for line in process.stdout:
            if text in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not found.wait(0.2):
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.args[:3]} did not say {text!r} in {READY_TIMEOUT_S:.0f}s")


@contextlib.contextmanager
def _running(args: list[str], **kwargs) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


@contextlib.contextmanager
def gunicorn_sync() -> Iterator[str]:
    """gunicorn's sync worker, one process: one connection at a time, no keep-alive."""
    sock = _listener()
    args = [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "sync", "--bind"]
    args += [f"fd://{sock.fileno()}", "--chdir", str(APPS), "wsgi_app:app"]
    with sock, _running(args, pass_fds=(sock.fileno(),)) as process:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        _wait_answering(f"{url}/ok", process)
        yield url


@contextlib.contextmanager
def uvicorn_echo(log: Path, tls: dict[str, str] | None = None) -> Iterator[str]:
    """uvicorn serving the echo app (each request appended to ``log`` as JSON)."""
    sock = _listener()
    args = [sys.executable, "-m", "uvicorn", "--fd", str(sock.fileno()), "--app-dir", str(APPS)]
    args += ["--log-level", "info", "--no-access-log", "asgi_echo:app"]
    for flag, path in (tls or {}).items():
        args += [f"--{flag}", path]
    env = {**os.environ, "ECHO_LOG": str(log)}
    scheme = "https" if tls else "http"
    with sock, _running(args, pass_fds=(sock.fileno(),), env=env) as process:
        url = f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"
        _wait_line(process, "Application startup complete")
        yield url


@contextlib.contextmanager
def hypercorn_echo(log: Path, tls: dict[str, str] | None = None) -> Iterator[str]:
    """hypercorn serving the echo app over HTTP/2: h2c with prior knowledge in cleartext,
    ``h2`` by ALPN with ``tls`` ({"certfile": ..., "keyfile": ...})."""
    sock = _listener()
    args = [sys.executable, "-m", "hypercorn", "--bind", f"fd://{sock.fileno()}"]
    args += ["--error-logfile", "-", "--log-level", "info"]
    for flag, path in (tls or {}).items():
        args += [f"--{flag}", path]
    args += ["asgi_echo:app"]
    env = {**os.environ, "ECHO_LOG": str(log), "PYTHONPATH": str(APPS)}
    scheme = "https" if tls else "http"
    with sock, _running(args, pass_fds=(sock.fileno(),), env=env) as process:
        _wait_line(process, "Running on")
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def aiohttp_shop() -> Iterator[str]:
    """aiohttp serving the shop (``apps/aiohttp_shop.py``) for session tests."""
    sock = _listener()
    args = [sys.executable, str(APPS / "aiohttp_shop.py"), str(sock.fileno())]
    with sock, _running(args, pass_fds=(sock.fileno(),)) as process:
        _wait_line(process, "serving")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """The standard library's ``python -m http.server`` (HTTP/1.0, one response a connection)."""
    args = [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1"]
    args += ["--directory", str(directory)]
    with _running(args) as process:
        line = process.stdout.readline()
        match = re.search(r"port (\d+)", line)
        if not match:
            raise RuntimeError(f"http.server said {line!r}")
        url = f"http://127.0.0.1:{match.group(1)}"
        _wait_answering(url + "/", process)
        yield url


def nginx_binary() -> str:
    """nginx's path, or skip the test (it comes from Debian's package)."""
    path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    return path


@contextlib.contextmanager
def nginx(
    root: Path,
    work: Path,
    listen: str = "127.0.0.1:0",
    http2: bool = False,
    tls: dict[str, str] | None = None,
    http_conf: str = "",
) -> Iterator[str]:
    """nginx serving ``root`` (keep-alive on), listening on ``listen`` (port 0: a free one);
    with ``http2``, HTTP/2 only in cleartext (h2c with prior knowledge), or ``h2`` by ALPN
    beside HTTP/1.1 with ``tls`` ({"certificate": ..., "key": ...}); ``http_conf`` goes in
    its ``http`` block."""
    binary = nginx_binary()
    host, _, port = listen.rpartition(":")
    if port == "0":
        with _listener(host.strip("[]")) as probe:
            port = str(probe.getsockname()[1])
    conf = work / "nginx.conf"
    options = (" ssl" if tls else "") + (" http2" if http2 else "")
    certificates = "".join(f"ssl_{name} {path};" for name, path in (tls or {}).items())
    user = "user root;" if os.geteuid() == 0 else ""  # workers must read the test's files
    conf.write_text(
        f"""
{user}
daemon off;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    {http_conf}
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen {host}:{port}{options};
        {certificates}
        root {root};
    }}
}}
"""
    )
    with _running([binary, "-c", str(conf), "-p", str(work)]) as process:
        url = f"{'https' if tls else 'http'}://{host}:{port}"
        if http2 or tls:
            _wait_listening(host.strip("[]"), int(port), process)
        else:
            _wait_answering(url + "/", process)
        yield url


def _wait_listening(host: str, port: int, process: subprocess.Popen) -> None:
    """Wait until ``host:port`` accepts a connection (for servers urllib cannot ask)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}")
        try:
            socket.create_connection((host, port), timeout=5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{host}:{port} did not accept within {READY_TIMEOUT_S:.0f}s")
