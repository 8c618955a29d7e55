"""Where each request's time went, per row (schema v4): its connection (``conn``,
``proto``), opening it (``connect_ns``, of which ``tls_ns``), and the first response
byte after the send (``ttfb_ns``); the rest of ``service_ns`` is receiving. Against
the reference dependency (aiohttp), uvicorn over TLS, and a scripted server that
holds a response's body back."""

from __future__ import annotations

import socket
import time

import numpy as np
import pandas as pd
import pytest
from real_servers import uvicorn_echo
from servers import read_request, scripted_server
from test_conformance import rows
from test_tls import pki  # noqa: F401  (a fixture)

from blastradius.cluster import launch
from blastradius.workers.template import Tls

MS = 1_000_000


def phases_hold(frame: pd.DataFrame) -> None:
    """What every row with a connection says: its phases fit inside its service time,
    each connection was opened by exactly one row (its first), and TLS is part of it."""
    assert frame["conn"].notna().all() and (frame["proto"] == "1.1").all()
    connect, tls, ttfb = (frame[c].to_numpy(np.int64) for c in ("connect_ns", "tls_ns", "ttfb_ns"))
    assert (connect >= 0).all() and (tls >= 0).all() and (tls <= connect).all()
    assert (ttfb >= 0).all()
    receive = frame["service_ns"].to_numpy(np.int64) - connect - ttfb
    assert (receive >= 0).all(), frame[receive < 0]
    for conn, mine in frame.sort_values("sent_ns").groupby("conn"):
        opened = mine["connect_ns"].to_numpy() > 0
        assert opened[0] and not opened[1:].any(), conn
        assert conn >> 32 == 0  # generator 0's: its index above its own count


@pytest.fixture(scope="module")
def dependency():
    with launch.start("dependency", ["--latency", "0,100"]) as service:
        yield service


def test_rows_say_which_connection_they_went_on_and_how_long_the_answer_took(dependency):
    frame = rows([f"{dependency.url}/endpoint/0", f"{dependency.url}/endpoint/1"], 50, 60)
    assert frame["ok"].all()
    phases_hold(frame)
    assert (frame["tls_ns"] == 0).all()  # cleartext
    # Endpoint 1 answers after 100 ms: its first byte comes then, endpoint 0's at once.
    slow = frame[frame["endpoint"] == 1]
    assert (slow["ttfb_ns"] >= 95 * MS).all()  # (a server timer may fire a tick early)
    assert (slow["ttfb_ns"] <= slow["service_ns"]).all()
    assert frame[frame["endpoint"] == 0]["ttfb_ns"].median() < 50 * MS
    # Keep-alive: far fewer connections than requests, each opened once.
    assert frame["conn"].nunique() < len(frame) / 2


def test_a_tls_connection_says_how_long_its_handshake_took(pki, tmp_path):  # noqa: F811
    tls = {"ssl-certfile": str(pki["server.pem"]), "ssl-keyfile": str(pki["server.key"])}
    with uvicorn_echo(tmp_path / "log", tls) as url:
        frame = rows([f"{url}/x"], 20, 10, tls=Tls(ca_pem=pki["ca.pem"].read_text()))
    assert frame["ok"].all()
    phases_hold(frame)
    opened = frame[frame["connect_ns"] > 0]
    assert (opened["tls_ns"] > 0).all() and (opened["tls_ns"] < opened["connect_ns"]).all()
    assert (frame[frame["connect_ns"] == 0]["tls_ns"] == 0).all()


def _body_held_back(conn: socket.socket) -> None:
    with conn:
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
            time.sleep(0.2)
            conn.sendall(b"cd")


def test_a_body_held_back_counts_as_receiving_not_waiting():
    with scripted_server(_body_held_back) as (url, _):
        frame = rows([url], 10, 3)
    assert frame["ok"].all() and (frame["bytes_in"] == 4).all()
    phases_hold(frame)
    receive = frame["service_ns"] - frame["connect_ns"] - frame["ttfb_ns"]
    assert (frame["ttfb_ns"] < 100 * MS).all() and (receive >= 190 * MS).all()


def test_a_request_with_no_connection_has_no_phases():
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    with closed:
        frame = rows([f"http://127.0.0.1:{closed.getsockname()[1]}/"], 20, 3)
    assert (frame["error"] == "connect").all()
    for name in ("conn", "proto", "connect_ns", "tls_ns", "ttfb_ns"):
        assert frame[name].isna().all(), name
