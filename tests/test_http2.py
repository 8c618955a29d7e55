"""The conformance suite's HTTP/2 half: the generator against servers it did not write.

Real servers: hypercorn (h2c with prior knowledge, and h2 by ALPN over TLS), nginx from
Debian with ``http2`` (where installed; it also ends connections with a GOAWAY after its
``keepalive_requests``), and uvicorn over TLS, which offers no h2 (the fallback). Scripted
HTTP/2 servers (h2's state machine on a socket) for what no server does on demand: a
stream reset, a GOAWAY between two streams, a refused stream, a connection closed
mid-stream, trailers, a 1xx on a stream, a body past its content-length. Each case runs
the generator itself (``run_share``, no Ray), and every row's phases must add up.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame
from hypothesis import given, settings
from hypothesis import strategies as st
from real_servers import hypercorn_echo, nginx, nginx_binary, uvicorn_echo
from servers import h2_server, scripted_server
from test_conformance import outcomes
from test_tls import pki  # noqa: F401  (a fixture)

from blastradius.workers.generator import Share, run_share
from blastradius.workers.schedule import Schedule
from blastradius.workers.template import RequestTemplate, Tls

S = 1_000_000_000
CLOCK_NS = 1_000  # time.monotonic_ns's resolution is finer; a microsecond is plenty


def rows(
    requests: list, rate: float = 200, count: int = 1, timeout_s: float = 5.0, **plan
) -> pd.DataFrame:
    """``count`` requests at ``rate``/s over HTTP/2 (unless ``http`` says otherwise); rows
    in send order, each checked: its phases add up to its service time."""
    batches: list[pa.RecordBatch] = []
    plan.setdefault("http", "2")
    schedule = Schedule.constant_rate(rate, requests=count)
    run_share(Share("t", tuple(requests), schedule, int(timeout_s * S), **plan), batches.append)
    frame = pa.Table.from_batches(batches).to_pandas().sort_values("seq", ignore_index=True)
    assert_phases_add_up(frame)
    return frame


def assert_phases_add_up(frame: pd.DataFrame) -> None:
    """connect + ttfb + receive = service, receive never negative; a row on a connection
    was sent; one with no connection has no phases."""
    had = frame[frame["conn"].notna()]
    assert had["sent_ns"].notna().all()
    answered = had[had["ttfb_ns"].notna() & had["service_ns"].notna()]
    receive = answered["service_ns"] - answered["connect_ns"] - answered["ttfb_ns"]
    assert (receive >= -CLOCK_NS).all(), answered[receive < -CLOCK_NS]
    assert (answered["ttfb_ns"] >= 0).all()
    assert (had["tls_ns"] >= 0).all() and (had["tls_ns"] <= had["connect_ns"]).all()
    none = frame[frame["conn"].isna()]
    assert none[["proto", "connect_ns", "tls_ns", "ttfb_ns"]].isna().all().all()


# --- hypercorn: h2c and h2 ------------------------------------------------------------------


@pytest.fixture(scope="module")
def hypercorn(tmp_path_factory):
    log = tmp_path_factory.mktemp("h2c") / "requests.jsonl"
    with hypercorn_echo(log) as url:
        yield url, log


@pytest.fixture(scope="module")
def hypercorn_tls(pki):  # noqa: F811
    log = pki["ca.pem"].parent / "h2-requests.jsonl"
    tls = {"certfile": str(pki["server.pem"]), "keyfile": str(pki["server.key"])}
    with hypercorn_echo(log, tls) as url:
        yield url


def test_h2c_streams_share_one_connection_and_every_byte_is_counted(hypercorn):
    url, _ = hypercorn
    frame = rows([f"{url}/bytes/10", f"{url}/bytes/100000"], count=30, connections=1, streams=8)
    assert outcomes(frame) == [(200, "", 10, True), (200, "", 100_000, True)] * 15
    assert set(frame["proto"]) == {"2"}
    assert frame["conn"].nunique() == 1
    assert (frame["connect_ns"] == 0).all()  # opened before the start (``connections``)
    assert (frame["tls_ns"] == 0).all()


def test_a_response_larger_than_the_windows_does_not_stall(hypercorn):
    url, _ = hypercorn
    size = 40 << 20  # past the 16 MiB stream and connection windows, more than twice
    assert outcomes(rows([f"{url}/bytes/{size}"], timeout_s=30)) == [(200, "", size, True)]


def test_a_body_larger_than_the_servers_window_arrives_whole(hypercorn):
    url, log = hypercorn
    body = bytes(range(256)) * 1000  # 256 kB: past HTTP/2's initial 64 kB window
    template = RequestTemplate(
        f"{url}/echo?q=1", "POST", (("X-Trace", "abc"), ("Connection", "close")), body
    )
    frame = rows([template])
    assert frame["ok"].all()
    echo = json.loads(log.read_bytes().splitlines()[-1])
    headers = dict(echo["headers"])
    assert echo["method"] == "POST" and echo["query"] == "q=1"
    assert base64.b64decode(echo["body"]) == body
    assert headers["x-trace"] == "abc" and headers["content-length"] == str(len(body))
    assert "connection" not in headers  # HTTP/2 has no connection-specific headers


def test_a_head_response_has_no_body_whatever_it_announces(hypercorn):
    url, _ = hypercorn
    frame = rows([RequestTemplate(f"{url}/bytes/500", "HEAD")])
    assert outcomes(frame) == [(200, "", 0, True)]


def test_a_stream_past_its_deadline_is_cut_alone(hypercorn):
    url, _ = hypercorn
    # /stream takes 1.2 s; the quick ones share its connection and finish in time.
    requests = [f"{url}/stream", f"{url}/bytes/7", f"{url}/bytes/7"]
    frame = rows(requests, rate=50, count=3, timeout_s=0.6, connections=1)
    assert [tuple(o[:2]) for o in outcomes(frame)] == [(0, "timeout"), (200, ""), (200, "")]
    assert frame["conn"].nunique() == 1


def test_h2_by_alpn_over_tls(hypercorn_tls, pki):  # noqa: F811
    tls = Tls(ca_pem=pki["ca.pem"].read_text())
    frame = rows([f"{hypercorn_tls}/bytes/3"], count=5, tls=tls)
    assert outcomes(frame) == [(200, "", 3, True)] * 5
    assert set(frame["proto"]) == {"2"} and frame["conn"].nunique() == 1
    # Opened on demand: the first stream carries the opening, the others wait for it.
    assert (frame["tls_ns"] > 0).tolist() == [True, False, False, False, False]
    assert frame["connect_ns"].iloc[0] > frame["tls_ns"].iloc[0]
    assert (frame["connect_ns"].iloc[1:] == 0).all() and (frame["tls_ns"].iloc[1:] == 0).all()


def test_a_server_without_h2_is_spoken_to_in_http1_and_the_rows_say_so(pki, tmp_path):  # noqa: F811
    tls = {"ssl-certfile": str(pki["server.pem"]), "ssl-keyfile": str(pki["server.key"])}
    with uvicorn_echo(tmp_path / "log", tls) as url:
        frame = rows([f"{url}/x"], count=6, tls=Tls(verify=False), connections=2)
    assert frame["ok"].all() and set(frame["proto"]) == {"1.1"}


def test_auto_speaks_http1_in_cleartext(hypercorn):
    url, _ = hypercorn
    frame = rows([f"{url}/bytes/4"], count=3, http="auto")
    assert frame["ok"].all() and set(frame["proto"]) == {"1.1"}


def test_h2c_to_a_server_that_speaks_only_http1_is_other(tmp_path):
    with uvicorn_echo(tmp_path / "log") as url:  # it answers the preface in HTTP/1.1
        assert outcomes(rows([f"{url}/x"])) == [(0, "other", 0, False)]


# --- nginx ------------------------------------------------------------------------------------


@pytest.fixture
def files(tmp_path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "small").write_bytes(b"s" * 123)
    (root / "big").write_bytes(b"b" * 3_000_000)
    return root


def test_nginx_h2c(files, tmp_path):
    nginx_binary()
    with nginx(files, tmp_path, http2=True) as url:
        frame = rows([f"{url}/small", f"{url}/big", f"{url}/missing"], count=9, connections=2)
    expected = [(200, "", 123, True), (200, "", 3_000_000, True), (404, "http")]
    assert [o if o[0] == 200 else o[:2] for o in outcomes(frame)] == expected * 3
    assert set(frame["proto"]) == {"2"} and frame["conn"].nunique() <= 2


def test_nginx_h2_by_alpn(files, tmp_path, pki):  # noqa: F811
    nginx_binary()
    tls = {"certificate": str(pki["server.pem"]), "certificate_key": str(pki["server.key"])}
    with nginx(files, tmp_path, http2=True, tls=tls) as url:
        frame = rows([f"{url}/small"], count=4, tls=Tls(ca_pem=pki["ca.pem"].read_text()))
    assert outcomes(frame) == [(200, "", 123, True)] * 4
    assert set(frame["proto"]) == {"2"} and (frame["tls_ns"] > 0).sum() >= 1


def test_nginx_goaway_after_its_keepalive_requests_loses_no_request(files, tmp_path):
    nginx_binary()
    with nginx(files, tmp_path, http2=True, http_conf="keepalive_requests 20;") as url:
        frame = rows([f"{url}/small"], rate=400, count=100, connections=1, streams=4)
    # nginx says GOAWAY with its 20th stream as the last: none sent above it is lost.
    assert frame["ok"].all(), frame[~frame["ok"]]
    per_connection = frame.groupby("conn").size()
    assert len(per_connection) >= 5 and per_connection.max() <= 20


# --- scripted HTTP/2 servers ------------------------------------------------------------------


def answer(h2, sid: int, body: bytes = b"ok", status: bytes = b"200") -> None:
    headers = [(b":status", status), (b"content-length", str(len(body)).encode())]
    h2.send_headers(sid, headers)
    h2.send_data(sid, body, end_stream=True)


def _reset_calm(h2, sid, requests, write) -> bool:
    h2.reset_stream(sid, ErrorCodes.ENHANCE_YOUR_CALM)
    return True


def _closed_mid_stream(h2, sid, requests, write) -> bool:
    h2.send_headers(sid, [(b":status", b"200"), (b"content-length", b"100")])
    h2.send_data(sid, b"x" * 5)
    return False  # and close


def _trailers(h2, sid, requests, write) -> bool:
    h2.send_headers(sid, [(b":status", b"200")])
    h2.send_data(sid, b"abcdef")
    h2.send_headers(sid, [(b"grpc-status", b"0")], end_stream=True)
    return True


def _interim_first(h2, sid, requests, write) -> bool:
    h2.send_headers(sid, [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")])
    answer(h2, sid, b"final", b"201")
    return True


def _past_content_length(h2, sid, requests, write) -> bool:
    h2.send_headers(sid, [(b":status", b"200"), (b"content-length", b"3")])
    h2.send_data(sid, b"too long", end_stream=True)
    return True


@pytest.mark.parametrize(
    ("respond", "outcome", "reset_code"),
    [
        (_reset_calm, (0, "reset", 0, False), int(ErrorCodes.ENHANCE_YOUR_CALM)),
        (_closed_mid_stream, (0, "reset", 5, False), None),
        (_trailers, (200, "", 6, True), None),
        (_interim_first, (201, "", 5, True), None),  # (its first byte: the 103's)
        (_past_content_length, (0, "other", 0, False), None),  # a connection error
    ],
    ids=["reset", "closed mid-stream", "trailers", "1xx first", "past content-length"],
)
def test_what_one_stream_ends_with_is_its_row(respond, outcome, reset_code):
    with h2_server(respond) as (url, _):
        frame = rows([url])
    assert outcomes(frame) == [outcome] and frame["proto"].tolist() == ["2"]
    code = frame["reset_code"].iloc[0]
    assert (None if pd.isna(code) else int(code)) == reset_code
    if outcome[0]:  # answered: its first byte was timed (a 1xx's, when one came first)
        assert frame["ttfb_ns"].notna().all()


@pytest.mark.parametrize("code", [ErrorCodes.NO_ERROR, ErrorCodes.ENHANCE_YOUR_CALM])
def test_goaway_ends_the_streams_above_its_last_id_and_those_below_complete(code):
    def respond(h2, sid, requests, write):
        if len(requests) < 2:
            return True
        first = requests[0]
        goaway = GoAwayFrame(0, error_code=int(code), last_stream_id=first)
        write(goaway.serialize())  # h2 itself would close the connection on its own GOAWAY
        answer(h2, first, b"done")
        return True

    with h2_server(respond) as (url, requests):
        frame = rows([url], rate=1000, count=2, connections=1)
    assert outcomes(frame) == [(200, "", 4, True), (0, "reset", 0, False)]
    assert frame["reset_code"].tolist()[1] == int(code)
    assert pd.isna(frame["reset_code"].tolist()[0])
    assert len(requests) == 2  # the stream above the last id was not sent again
    assert frame["conn"].nunique() == 1


def test_a_stream_refused_for_the_concurrency_limit_is_reset_refused():
    def respond(h2, sid, requests, write):
        if len(requests) == 1:
            return True  # held: the second is over the limit
        h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
        answer(h2, requests[0])
        return True

    with h2_server(respond) as (url, _):
        frame = rows([url], rate=1000, count=2, connections=1)
    assert outcomes(frame) == [(200, "", 2, True), (0, "reset", 0, False)]
    assert frame["reset_code"].tolist()[1] == int(ErrorCodes.REFUSED_STREAM)


def test_the_servers_stream_limit_is_kept():
    open_now: list[int] = []
    most = [0]
    lock = threading.Lock()

    def respond(h2, sid, requests, write):
        with lock:
            open_now.append(sid)
            most[0] = max(most[0], len(open_now))
            if len(open_now) == 2 or len(requests) == 6:
                for each in open_now:
                    answer(h2, each)
                open_now.clear()
        return True

    limit = {SettingCodes.MAX_CONCURRENT_STREAMS: 2}
    with h2_server(respond, limit) as (url, requests):
        frame = rows([url], rate=1000, count=6, connections=1, streams=50)
    assert frame["ok"].all() and len(requests) == 6
    assert most[0] == 2


def test_a_request_that_waits_past_its_deadline_for_a_stream_was_never_sent():
    def respond(h2, sid, requests, write):
        return True  # never answers: the one stream stays taken

    # The first holds the one stream until its deadline; the second goes out then, with
    # its whole timeout; the third's deadline has passed in line by then.
    limit = {SettingCodes.MAX_CONCURRENT_STREAMS: 1}
    with h2_server(respond, limit) as (url, requests):
        frame = rows([url], rate=1000, count=3, timeout_s=0.5, connections=1)
    assert [o[:2] for o in outcomes(frame)] == [(0, "timeout"), (0, "timeout"), (0, "dropped")]
    assert frame["sent_ns"].notna().tolist() == [True, True, False]
    assert frame["sent_ns"].iloc[1] - frame["intended_ns"].iloc[1] >= 0.45 * S  # its wait
    assert frame["service_ns"].iloc[1] >= 0.45 * S  # then its whole timeout, once sent
    assert len(requests) == 2


# --- the CLI, end to end ----------------------------------------------------------------------


def _cli_rows(args: list[str]) -> pd.DataFrame:
    result = subprocess.run(
        [sys.executable, "-m", "blastradius.cluster", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    frame = pd.read_parquet(Path(result.stdout.strip().splitlines()[-1]) / "requests")
    assert_phases_add_up(frame)
    assert ", where the time went: " in result.stdout and "(HTTP/2, " in result.stdout
    return frame


def test_load_http2_over_https_from_the_cli(hypercorn_tls, pki, tmp_path):  # noqa: F811
    args = ["load", f"{hypercorn_tls}/bytes/5", "--http2", "--ca", str(pki["ca.pem"])]
    args += ["--rate", "100", "--requests", "40", "--generators", "1", "--streams", "4"]
    frame = _cli_rows([*args, "--out", str(tmp_path)])
    assert len(frame) == 40 and frame["ok"].all()
    assert set(frame["proto"]) == {"2"} and (frame["bytes_in"] == 5).all()


def test_a_scenario_with_http_2_runs_h2c(hypercorn, tmp_path):
    url, _ = hypercorn
    scenario = {
        "name": "h2",
        "load": {"rate": 100, "requests": 40, "connections": 2},
        "generators": 2,
        "targets": [{"name": "h2c", "url": f"{url}/bytes/9", "http": 2, "streams": 10}],
    }
    (tmp_path / "h2.yaml").write_text(yaml.safe_dump(scenario))
    frame = _cli_rows(["run", str(tmp_path / "h2.yaml"), "--out", str(tmp_path / "runs")])
    assert len(frame) == 40 and frame["ok"].all() and set(frame["proto"]) == {"2"}
    assert frame.groupby("worker")["conn"].nunique().tolist() == [1, 1]  # 2 over 2 workers


def test_a_server_that_never_says_settings_is_a_timeout_on_no_connection():
    def handle(conn) -> None:
        with conn:
            while conn.recv(65536):
                pass

    with scripted_server(handle) as (url, _):
        frame = rows([url], timeout_s=0.5)
    assert outcomes(frame) == [(0, "timeout", 0, False)]
    assert frame["conn"].isna().all() and frame["sent_ns"].notna().all()


@pytest.mark.parametrize(
    ("connections", "workers", "streams", "caps"),
    [
        (0, 2, 100, [100, 100]),  # none given: max_in_flight (10,000) / streams each
        (0, 1, 30, [334]),
        (4, 2, 100, [2, 2]),
        (1, 3, 100, [1, 1, 1]),  # at least one each
        (5, 2, 10, [3, 2]),
    ],
)
def test_the_connections_cap_is_split_over_the_generators(connections, workers, streams, caps):
    import asyncio

    from blastradius.workers.generator import _client

    async def cap(worker: int) -> int:
        schedule = Schedule.constant_rate(1, requests=1)
        share = Share(
            "t",
            ("http://h/",),
            schedule,
            S,
            worker=worker,
            workers=workers,
            connections=connections,
            http="2",
            streams=streams,
        )
        return _client(share, lambda *_: None).max_connections

    assert [asyncio.run(cap(w)) for w in range(workers)] == caps


def test_an_answer_before_the_request_body_is_out_frees_the_stream():
    def respond(h2, sid, requests, write):
        answer(h2, sid, b"", b"413" if len(requests) == 1 else b"200")
        return True

    big = RequestTemplate("http://x/", "POST", body=b"b" * 200_000)  # past the 64 kB window
    limit = {SettingCodes.MAX_CONCURRENT_STREAMS: 1}
    with h2_server(respond, limit, on_headers=True) as (url, requests):
        templates = [RequestTemplate(url, "POST", body=big.body), url]
        frame = rows(templates, rate=20, count=2, connections=1)
    # The first stream's half is closed with it: the one stream is free for the next.
    assert [o[:3] for o in outcomes(frame)] == [(413, "http", 0), (200, "", 0)]
    assert len(requests) == 2


def test_a_sessions_steps_capture_from_http2_responses(hypercorn):
    from blastradius.cluster.scenario import parse_target

    url, log = hypercorn
    captures = {"q": {"json": "$.query"}, "e": {"header": "X-Echo"}}
    steps = [
        {"name": "ask", "url": f"{url}/ask?token=t-42", "capture": captures},
        {"name": "use", "url": f"{url}/use", "headers": {"X-Q": "${q}", "X-E": "${e}"}},
    ]
    target = parse_target({"name": "s", "steps": steps, "http": 2}, "targets[0]")
    batches: list[pa.RecordBatch] = []
    schedule = Schedule.constant_rate(10, requests=3)
    share = Share("s", (), schedule, 5 * S, journey=target.journey, http=target.http)
    run_share(share, batches.append)
    frame = pa.Table.from_batches(batches).to_pandas()
    assert_phases_add_up(frame)
    assert len(frame) == 6 and frame["ok"].all() and set(frame["proto"]) == {"2"}
    used = [json.loads(line) for line in log.read_bytes().splitlines()]
    used = [dict(e["headers"]) for e in used if e["path"] == "/use"][-3:]
    assert [(h["x-q"], h["x-e"]) for h in used] == [("token=t-42", "yes")] * 3


# --- the request's HTTP/2 form (pure) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "headers", "body"),
    [
        (
            RequestTemplate("http://h:8080/a%20b?q=1"),
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"h:8080"),
                (b":path", b"/a%20b?q=1"),
                (b"user-agent", b"blastradius"),
                (b"accept", b"*/*"),
            ],
            b"",
        ),
        (
            RequestTemplate(
                "https://u:p@h/x",
                "POST",
                (("X-A", " 1 "), ("Connection", "close"), ("TE", "gzip"), ("Keep-Alive", "5")),
                b"{}",
            ),
            [
                (b":method", b"POST"),
                (b":scheme", b"https"),
                (b":authority", b"h"),
                (b":path", b"/x"),
                (b"user-agent", b"blastradius"),
                (b"accept", b"*/*"),
                (b"authorization", b"Basic dTpw"),
                (b"x-a", b"1"),
                (b"content-length", b"2"),
            ],
            b"{}",
        ),
        (
            RequestTemplate("http://h/", "GET", (("te", "Trailers"), ("Upgrade", "h2c"))),
            [
                (b":method", b"GET"),
                (b":scheme", b"http"),
                (b":authority", b"h"),
                (b":path", b"/"),
                (b"user-agent", b"blastradius"),
                (b"accept", b"*/*"),
                (b"te", b"Trailers"),
            ],
            b"",
        ),
    ],
)
def test_a_requests_http2_form_is_its_http1_form_without_what_http2_forbids(
    template, headers, body
):
    from blastradius.workers.client import PreparedRequest
    from blastradius.workers.http2 import h2_form

    assert h2_form(PreparedRequest.build(template)) == (headers, body)


_names = st.sampled_from([b"a", b"b", b"date", b"x-long", b"server"])
_values = st.sampled_from([b"1", b"2", b"x" * 40, b"y" * 300, b""])
_lists = st.lists(st.lists(st.tuples(_names, _values), min_size=1, max_size=4), max_size=12)


@settings(max_examples=60, deadline=None)
@given(_lists, st.lists(st.sampled_from([0, 64, 4096]), max_size=3))
def test_header_blocks_made_once_mean_what_hpack_makes_every_time(lists, sizes):
    """The caching encoder and decoder against hpack's own, over repeats (hits), entries
    added and evicted, and table size updates between blocks."""
    from hpack import Decoder, Encoder

    from blastradius.workers.http2 import _Decoder, _Encoder

    ours_out, plain_in = _Encoder(), Decoder()
    plain_out, ours_in = Encoder(), _Decoder(65536)
    for i, headers in enumerate(lists * 2):  # each list twice: the second may be a hit
        if sizes and i % 3 == 2:
            size = sizes[i % len(sizes)]
            ours_out.header_table_size = plain_in.max_allowed_table_size = size
            plain_out.header_table_size = ours_in.max_allowed_table_size = size
        assert plain_in.decode(ours_out.encode(headers), raw=True) == headers
        assert ours_in.decode(plain_out.encode(headers), raw=True) == headers


def test_the_line_gets_a_new_connection_when_the_one_it_waited_for_fails():
    def respond(h2, sid, requests, write):
        answer(h2, sid)
        return True

    with h2_server(respond, close_first=1) as (url, _):
        frame = rows([url], rate=100_000, count=4, connections=0, streams=10)  # at once
    # The first opened the connection and lost it; the others, in line for it, are sent
    # on the next one.
    assert [o[:2] for o in outcomes(frame)] == [(0, "reset"), (200, ""), (200, ""), (200, "")]
    assert frame["conn"].iloc[1:].nunique() == 1


def _one_by_client(url: str, h2c: bool, tls: Tls | None = None, keep: bool = False) -> tuple:
    """One request by an HTTP/2 client itself (no generator, so no connection opened
    before it): what ``on_done`` was given."""
    import asyncio

    from blastradius.workers.client import PreparedRequest
    from blastradius.workers.http2 import Http2Client

    async def main() -> tuple:
        done: list[tuple] = []
        client = Http2Client(1, 10, 5.0, lambda *a: done.append(a), tls, h2c=h2c)
        client.send(PreparedRequest._prepare(url, "GET", (), b"", keep=keep), "one")
        while not done:
            await asyncio.sleep(0.01)
        client.close()
        return done[0]

    return asyncio.run(main())


def test_auto_takes_cleartext_to_http1_and_tls_to_alpn(hypercorn, hypercorn_tls, pki):  # noqa: F811
    from blastradius.workers.client import PROTO_1, PROTO_2

    url, _ = hypercorn
    assert _one_by_client(f"{url}/bytes/1", h2c=False)[5][5] == PROTO_1
    tls = Tls(ca_pem=pki["ca.pem"].read_text())
    assert _one_by_client(f"{hypercorn_tls}/bytes/1", h2c=False, tls=tls)[5][5] == PROTO_2


def test_a_kept_response_has_its_headers_without_pseudo_headers_and_its_body(hypercorn):
    url, _ = hypercorn
    _, status, nbytes, ending, kept, _ = _one_by_client(f"{url}/bytes/3", True, keep=True)
    headers, body = kept
    assert (status, nbytes, ending.name, body) == (200, 3, "RESPONSE", b"xxx")
    assert (b"content-length", b"3") in headers
    assert not [name for name, _ in headers if name.startswith(b":")]
    unkept = _one_by_client(f"{url}/bytes/3", True)
    assert unkept[4] is None


def test_a_connection_closed_right_after_its_settings_is_reset_not_left_to_time_out():
    from h2.config import H2Configuration
    from h2.connection import H2Connection

    def handle(sock) -> None:
        server = H2Connection(H2Configuration(client_side=False))
        server.initiate_connection()
        with sock:
            sock.sendall(server.data_to_send())  # SETTINGS, then the end

    with scripted_server(handle) as (url, _):
        frame = rows([url], rate=100, count=3, timeout_s=3)
    assert [o[:2] for o in outcomes(frame)] == [(0, "reset")] * 3
    assert (frame["service_ns"] < 2 * S).all()


def test_streams_are_spread_over_the_connections_open(hypercorn):
    url, _ = hypercorn
    frame = rows([f"{url}/bytes/1"], rate=500, count=20, connections=2)
    assert frame["ok"].all()
    assert sorted(frame.groupby("conn").size().tolist()) == [10, 10]  # in turn


def test_a_server_whose_first_frame_is_an_empty_settings_is_http2():
    """An empty SETTINGS frame is a whole frame of 9 bytes: the connection is open with
    it, before anything else comes."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from h2.events import StreamEnded

    def handle(sock) -> None:
        server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        server.initiate_connection()
        server.data_to_send()  # its own SETTINGS are not sent: an empty frame instead
        with sock:
            sock.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            while data := sock.recv(65536):
                for event in server.receive_data(data):
                    if isinstance(event, StreamEnded):  # nothing else is sent before it
                        answer(server, event.stream_id, b"fine")
                        sock.sendall(server.data_to_send())

    with scripted_server(handle) as (url, _):
        assert outcomes(rows([url], timeout_s=2)) == [(200, "", 4, True)]


def test_the_versions_a_series_used_are_said_with_their_requests_when_several():
    from blastradius.analysis.phases import http_versions

    assert http_versions({"http": {"2": 40}}) == "HTTP/2"
    assert http_versions({"http": {"1.1": 3, "2": 1097}}) == "HTTP/1.1 for 3, HTTP/2 for 1,097"


def test_goaway_with_last_id_0_ends_every_stream():
    def respond(h2, sid, requests, write):
        write(GoAwayFrame(0, error_code=0, last_stream_id=0).serialize())  # none processed
        return True

    with h2_server(respond) as (url, requests):
        frame = rows([url], timeout_s=3)
    assert outcomes(frame) == [(0, "reset", 0, False)] and frame["reset_code"].tolist() == [0]
    assert len(requests) == 1


def test_the_preface_goes_first_however_soon_the_server_speaks():
    """Servers send their SETTINGS as soon as they accept: our preface still opens each
    connection, before any answer to theirs (twenty opened at once, to meet the race)."""
    firsts: list[bytes] = []

    def handle(sock) -> None:
        with sock:
            sock.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS, at once
            got = b""
            while len(got) < 24 and (chunk := sock.recv(24 - len(got))):
                got += chunk
            firsts.append(got)

    with scripted_server(handle) as (url, _):
        rows([url], count=1, timeout_s=1, connections=20, streams=1)
    assert len(firsts) >= 20 and set(firsts) == {b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"}


def test_goaway_with_both_streams_up_to_its_last_id_lets_both_complete():
    def respond(h2, sid, requests, write):
        if len(requests) < 2:
            return True
        write(GoAwayFrame(0, error_code=0, last_stream_id=requests[1]).serialize())
        for each in requests:
            answer(h2, each, b"done")
        return True

    with h2_server(respond) as (url, _):
        frame = rows([url], rate=100_000, count=2, connections=1)
    assert outcomes(frame) == [(200, "", 4, True)] * 2 and frame["reset_code"].isna().all()


def test_a_connection_after_its_goaway_is_closed_once_its_last_stream_is_done():
    """Each connection carries one request, then says GOAWAY: the client closes it as soon
    as that request's answer is in, not at the end of the run (a run against nginx would
    otherwise keep one socket per keepalive_requests)."""
    closed: list[float] = []
    arrived: list[float] = []

    def handle(sock) -> None:
        from h2.config import H2Configuration
        from h2.connection import H2Connection
        from h2.events import StreamEnded

        server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        server.initiate_connection()
        with sock:
            sock.sendall(server.data_to_send())
            while data := sock.recv(65536):
                for event in server.receive_data(data):
                    if isinstance(event, StreamEnded):
                        arrived.append(time.monotonic())
                        goaway = GoAwayFrame(0, error_code=0, last_stream_id=event.stream_id)
                        sock.sendall(server.data_to_send() + goaway.serialize())
                        answer(server, event.stream_id)
                sock.sendall(server.data_to_send())
            closed.append(time.monotonic())

    with scripted_server(handle) as (url, _):
        frame = rows([url], rate=4, count=3)
    assert frame["ok"].all() and frame["conn"].nunique() == 3
    assert len(arrived) == 3 and closed and min(closed) < arrived[2]  # before the last sent


def test_the_first_byte_counts_from_the_first_interim_response():
    def respond(h2, sid, requests, write):
        h2.send_headers(sid, [(b":status", b"103")])
        write()
        time.sleep(0.3)  # the server works on, its first bytes already sent
        h2.send_headers(sid, [(b":status", b"103")])
        answer(h2, sid, b"late")
        return True

    with h2_server(respond) as (url, _):
        frame = rows([url])
    assert outcomes(frame) == [(200, "", 4, True)]
    assert frame["ttfb_ns"].iloc[0] < 0.25 * S <= frame["service_ns"].iloc[0]


def test_the_dependencys_latency_is_waiting_for_the_first_byte_over_h2c():
    from blastradius.cluster import launch

    with launch.start("dependency", ["--latency", "100ms"]) as dependency:
        frame = rows([f"{dependency.url}/endpoint/0"], rate=50, count=5, connections=1)
    assert frame["ok"].all() and set(frame["proto"]) == {"2"}
    assert (frame["ttfb_ns"] >= 95 * 1_000_000).all()
    assert (frame["service_ns"] - frame["ttfb_ns"] < 50 * 1_000_000).all()


def test_a_kept_response_keeps_its_first_mib_and_counts_the_rest():
    from blastradius.workers.client import KEEP_LIMIT

    piece, pieces = b"k" * 10_000, 120  # 1.2 MB, in frames that do not fall on the limit

    def respond(h2, sid, requests, write):
        h2.send_headers(sid, [(b":status", b"200")])
        for n in range(pieces):
            h2.send_data(sid, piece, end_stream=n == pieces - 1)
        return True

    with h2_server(respond) as (url, _):
        _, status, nbytes, _, kept, _ = _one_by_client(url, True, keep=True)
    assert (status, nbytes) == (200, len(piece) * pieces) and kept[1] == b"k" * KEEP_LIMIT


def test_the_dependency_reads_a_body_past_its_window_over_h2c():
    """A POST of 200 kB over h2c (past HTTP/2's initial 64 kB window): the dependency
    opens its window as it reads, so the request ends, and is answered (404: over HTTP/2
    it serves GETs of its endpoints)."""
    from blastradius.cluster import launch

    with launch.start("dependency", ["--latency", "1"]) as dependency:
        post = RequestTemplate(f"{dependency.url}/endpoint/0", "POST", body=b"p" * 200_000)
        frame = rows([post], timeout_s=5)
    assert [o[:2] for o in outcomes(frame)] == [(404, "http")]


def test_a_kept_request_whose_stream_is_reset_keeps_nothing():
    with h2_server(_reset_calm) as (url, _):
        _, status, _, ending, kept, phases = _one_by_client(url, True, keep=True)
    assert (status, ending.name, kept, phases[6]) == (0, "BROKEN", None, 11)
