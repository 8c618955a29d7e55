"""Where each request's time went, per row (schema v4): its connection (``conn``,
``proto``), opening it (``connect_ns``, of which ``tls_ns``), and the first response
byte after the send (``ttfb_ns``); the rest of ``service_ns`` is receiving. Against
the reference dependency (aiohttp), uvicorn over TLS, and a scripted server that
holds a response's body back."""

from __future__ import annotations

import itertools
import json
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from real_servers import uvicorn_echo
from servers import read_request, scripted_server
from test_conformance import rows
from test_tls import pki  # noqa: F401  (a fixture)

from blastradius import analysis
from blastradius.analysis.load import locate
from blastradius.analysis.phases import phase_figures
from blastradius.analysis.report import phases_html
from blastradius.analysis.scan import open_runs
from blastradius.cluster import launch
from blastradius.workers.generator import Share, run_share
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.record import ERROR_CODE, RowBuffer
from blastradius.workers.schedule import Schedule
from blastradius.workers.shards import write_shard
from blastradius.workers.template import Tls

S, MS = 1_000_000_000, 1_000_000


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


# --- the phases over a run's files (analysis/phases.py) ----------------------------------


def _nearest(values: np.ndarray) -> dict:
    if not len(values):
        return {"p50_ms": None, "p99_ms": None}
    picked = np.quantile(values, [0.5, 0.99], method="inverted_cdf") / MS
    return {"p50_ms": float(picked[0]), "p99_ms": float(picked[1])}


def test_a_runs_phases_from_its_files_are_those_of_its_loaded_rows(tmp_path, dependency):
    """Two targets' rows from two generators each, as a run's shards; then each target's
    connections and its phases' percentiles from the files equal the loaded rows'
    (nearest rank), and analyze and report say them."""
    from test_experiments import run_cli  # the CLI, as installed

    run_dir = str(tmp_path / "phases")
    for target, endpoint in (("fast", 0), ("slow", 1)):
        for worker in range(2):
            url = f"{dependency.url}/endpoint/{endpoint}"
            schedule = Schedule.constant_rate(100, requests=150)
            share = Share(target, (url,), schedule, 2 * S, worker=worker, workers=2)
            names = (shard_name(worker, n) for n in itertools.count())
            directory = shard_dir(run_dir, target)

            def sink(batch, directory=directory, names=names) -> None:
                write_shard([batch], directory, next(names))

            run_share(share, sink)
    manifest = {"run_id": "phases", "status": "completed", "targets": {"fast": {}, "slow": {}}}
    Path(run_dir, "run.json").write_text(json.dumps(manifest))
    rows = analysis.load(run_dir).rows
    _, shards = locate(run_dir)
    found = phase_figures(shards, lambda shard: shard.target)
    assert sorted(found) == ["fast", "slow"]
    for target, figures in found.items():
        mine = rows[rows["target"] == target]
        has = mine["conn"].notna()
        assert figures["connections"] == mine["conn"].nunique()
        assert figures["requests_per_connection"] == has.sum() / mine["conn"].nunique()
        assert figures["http"] == {"1.1": has.sum()}
        assert figures["opened"] == (mine["connect_ns"] > 0).sum() == figures["connections"]
        assert figures["tls_handshakes"] == 0 and figures["tls"]["p50_ms"] is None
        opened = mine[mine["connect_ns"] > 0]["connect_ns"].to_numpy(np.int64)
        assert figures["connect"] == _nearest(opened)
        ok = mine[mine["ok"] & has & mine["ttfb_ns"].notna()]
        ttfb = ok["ttfb_ns"].to_numpy(np.int64)
        receive = (ok["service_ns"] - ok["connect_ns"] - ok["ttfb_ns"]).to_numpy(np.int64)
        assert figures["ttfb"] == _nearest(ttfb) and figures["receive"] == _nearest(receive)
    assert found["slow"]["ttfb"]["p50_ms"] >= 95 > found["fast"]["ttfb"]["p99_ms"]
    # Connections of two generators are told apart: each one's ids above its own count.
    assert set((rows["conn"].dropna().to_numpy(np.int64) >> 32).tolist()) == {0, 1}
    text = run_cli("analyze", run_dir)
    assert text.returncode == 0, text.stderr
    line = next(x for x in text.stdout.splitlines() if x.startswith("slow, where the time went"))
    assert f"{found['slow']['connections']} connections (HTTP/1.1, " in line
    assert "first byte p50" in line
    document = json.loads(run_cli("analyze", run_dir, "--json").stdout)
    assert document["targets"]["slow"]["phases"] == found["slow"]
    written = run_cli("report", run_dir, "--out", str(tmp_path / "report"))
    assert written.returncode == 0, written.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    slow = found["slow"]
    row = f"<tr><td>slow</td><td>HTTP/1.1</td><td>{slow['connections']:,}</td>"
    assert "<h2>Where the time went</h2>" in page and row in page
    assert f"<td>{slow['ttfb']['p50_ms']:,.2f}</td>" in page.split(row)[1].split("</tr>")[0]


def test_a_run_written_before_phases_has_none(tmp_path):
    run = Path(__file__).parent / "data" / "run-format-0" / "today-20261206T140220Z-bd89"
    _, shards = locate(str(run))
    assert set(phase_figures(shards, lambda shard: shard.target).values()) == {None}
    runs, shards = open_runs([str(run)])
    assert phases_html(runs, shards) == ""


def test_a_series_none_of_whose_rows_had_a_connection_has_no_phases(tmp_path):
    # Schema v4 rows, every one refused (no connection): nothing to say, no line.
    buffer = RowBuffer(worker=0, node="n")
    for i in range(5):
        buffer.add(i, 0, 10 + i, 11 + i, 12 + i, 0, ERROR_CODE["connect"], 0)
    write_shard([buffer.close()], shard_dir(str(tmp_path), "t"), shard_name(0, 0))
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "r", "status": "completed"}))
    _, shards = locate(str(tmp_path))
    assert phase_figures(shards, lambda shard: shard.target) == {"t": None}
