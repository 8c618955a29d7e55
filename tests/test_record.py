"""Rows into Parquet shards: exact round trips, atomic publication, a crash mid-write."""

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blastradius import analysis
from blastradius.workers import layout
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.record import (
    ERROR_KINDS,
    METADATA_KEY,
    NULL_NS,
    PROTOCOLS,
    SCHEMA,
    RowBuffer,
)
from blastradius.workers.shards import write_shard

TIMEOUT_NS = 1_000_000_000
EPOCH = 1_790_000_000_000_000_000

times = st.integers(0, 10 * TIMEOUT_NS)
rows = st.lists(
    st.tuples(
        st.integers(0, 2**40),  # seq
        st.integers(0, 1000),  # endpoint
        times,  # intended offset
        st.one_of(st.none(), times),  # sent offset
        st.one_of(st.none(), times),  # done offset
        st.integers(0, 599),  # status
        st.integers(0, len(ERROR_KINDS) - 1),  # error code
        st.integers(0, 2**40),  # bytes in: past 2 GiB (schema v2)
        st.integers(0, 2**50),  # a session's index (schema v3; a buffer of sessions only)
        # Its connection and phases (schema v4): conn, connect, TLS, first byte, HTTP
        # version's place in PROTOCOLS, and a stream's reset code (or none); or none.
        st.one_of(
            st.none(),
            st.tuples(
                st.integers(1, 2**40),
                times,
                times,
                st.one_of(st.just(NULL_NS), times),
                st.integers(0, len(PROTOCOLS) - 1),
                st.one_of(st.none(), st.integers(0, 2**31 - 1)),
            ),
        ),
    ),
    max_size=50,
)


def _fill(buffer: RowBuffer, generated) -> None:
    for seq, endpoint, intended, sent, done, status, error, nbytes, *rest in generated:
        session, phases = [*rest, -1, None][:2]
        reset = None if phases is None else phases[5]
        buffer.add(
            seq,
            endpoint,
            EPOCH + intended,
            NULL_NS if sent is None else EPOCH + sent,
            NULL_NS if done is None else EPOCH + done,
            status,
            error,
            nbytes,
            session,
            *(phases or ())[:5],
        )
        if reset is not None:
            buffer.reset(reset)


@settings(max_examples=40, deadline=None)
@given(rows, st.booleans())
def test_rows_round_trip_through_a_shard_exactly(tmp_path_factory, generated, sessions):
    directory = str(tmp_path_factory.mktemp("shards"))
    buffer = RowBuffer(worker=3, node="node-a", sessions=sessions)
    _fill(buffer, generated)
    batch = buffer.close()
    if not generated:
        assert batch is None
        return
    path = write_shard([batch], directory, "part-0003-000000.parquet")
    back = pq.read_table(path)
    assert back.schema.metadata[METADATA_KEY] == b"4"
    assert back.schema.equals(SCHEMA, check_metadata=False)
    got = back.to_pylist()
    assert len(got) == len(generated)
    for row, (seq, endpoint, intended, sent, done, status, error, nbytes, session, phases) in zip(
        got, generated, strict=True
    ):
        conn, connect, tls, first, proto, reset = phases or (None,) * 6
        intended_ns = EPOCH + intended
        sent_ns = None if sent is None else EPOCH + sent
        done_ns = None if done is None else EPOCH + done
        latency = None if done is None else done_ns - intended_ns
        assert row == {
            "worker": 3,
            "node": "node-a",
            "seq": seq,
            "endpoint": endpoint,
            "intended_ns": intended_ns,
            "sent_ns": sent_ns,
            "done_ns": done_ns,
            "latency_ns": latency,
            "service_ns": None if done is None or sent is None else done_ns - sent_ns,
            "status": status,
            "error": ERROR_KINDS[error],
            "ok": error == 0,  # the kind is decided once, by workers.outcome.classify
            "bytes_in": nbytes,
            # A session's step is its endpoint; a request of no session has neither.
            "session": session if sessions else None,
            "step": endpoint if sessions else None,
            # Where its time went on its connection; none of it without one.
            "conn": conn,
            "proto": None if phases is None else PROTOCOLS[proto],
            "connect_ns": connect,
            "tls_ns": tls,
            "ttfb_ns": None if first == NULL_NS else first,
            "reset_code": reset,
        }


def test_a_closed_buffer_starts_empty():
    buffer = RowBuffer(worker=0, node="n")
    _fill(buffer, [(0, 0, 0, 1, 2, 200, 0, 5)])
    assert buffer.close().num_rows == 1
    assert len(buffer) == 0 and buffer.close() is None


def test_shards_land_in_the_hive_layout_and_read_back_by_target(tmp_path):
    run = str(tmp_path / "run")
    for target in ("sync", "async"):
        for worker in range(2):
            buffer = RowBuffer(worker=worker, node=f"node-{worker}")
            _fill(buffer, [(i, 0, i, i, i + 5, 200, 0, 2) for i in range(10)])
            write_shard([buffer.close()], shard_dir(run, target), shard_name(worker, 0))
    assert sorted(p.name for p in (tmp_path / "run/requests/target=sync").iterdir()) == [
        "part-0000-000000.parquet",
        "part-0001-000000.parquet",
    ]
    frame = pd.read_parquet(tmp_path / "run/requests")
    assert len(frame) == 40
    assert frame.groupby("target", observed=True).size().to_dict() == {"async": 20, "sync": 20}


_SLOW_WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from blastradius.workers.record import RowBuffer
    from blastradius.workers.shards import write_shard
    buffer = RowBuffer(worker=0, node="n")
    n = 3_000_000
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 2**62, n).tolist()
    for i in range(n):
        buffer.add(seq[i], i % 10, i, i, i + 7, 200, 0, 1)
    batch = buffer.close()
    print("writing", flush=True)
    while True:  # keep publishing shards until killed
        write_shard([batch] * 4, sys.argv[1], "part-0000-000000.parquet")
""")


def test_a_write_killed_midway_leaves_only_an_underscore_file_readers_skip(tmp_path):
    directory = tmp_path / "requests" / "target=t"
    directory.mkdir(parents=True)
    writer = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(directory)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline() == "writing\n"
        deadline = time.monotonic() + 60
        while not any(p.name.startswith("_") for p in directory.iterdir()):
            assert time.monotonic() < deadline, "the writer never started a shard"
            time.sleep(0.002)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    names = [p.name for p in directory.iterdir()]
    partial = [n for n in names if n.startswith("_")]
    assert len(partial) == 1 and partial[0].endswith("-part-0000-000000.parquet")
    # The kill came during the first write, before any shard was published.
    assert names == partial
    assert ds.dataset(tmp_path / "requests", partitioning="hive").to_table().num_rows == 0
    assert len(pd.read_parquet(tmp_path / "requests")) == 0


def test_shards_publish_through_a_filesystem_uri(tmp_path):
    buffer = RowBuffer(worker=0, node="n")
    _fill(buffer, [(i, 0, i, i, i + 5, 200, 0, 2) for i in range(3)])
    uri = f"file://{tmp_path}/run"
    path = write_shard([buffer.close()], shard_dir(uri, "t"), shard_name(0, 0))
    assert path == f"{tmp_path}/run/requests/target=t/part-0000-000000.parquet"
    assert [p.name for p in (tmp_path / "run/requests/target=t").iterdir()] == [
        "part-0000-000000.parquet"
    ]
    assert pq.read_table(path).num_rows == 3


def test_shards_store_times_as_deltas_compressed_with_zstd(tmp_path):
    buffer = RowBuffer(worker=0, node="n")
    _fill(buffer, [(i, 0, i * 1000, i * 1000 + 5, i * 1000 + 9, 200, 0, 3) for i in range(500)])
    path = write_shard([buffer.close()], str(tmp_path), "part-0000-000000.parquet")
    group = pq.ParquetFile(path).metadata.row_group(0)
    columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
    for name in ("seq", "intended_ns", "sent_ns", "done_ns", "latency_ns", "service_ns"):
        assert "DELTA_BINARY_PACKED" in columns[name].encodings, name
    assert {c.compression for c in columns.values()} == {"ZSTD"}
    assert pq.read_table(path)["intended_ns"].to_pylist() == [EPOCH + i * 1000 for i in range(500)]


def test_the_layout_lists_published_shards_only_and_names_their_target(tmp_path):
    run = tmp_path / "run"
    buffer = RowBuffer(worker=0, node="n")
    _fill(buffer, [(0, 0, 0, 0, 5, 200, 0, 2)])
    batch = buffer.close()
    write_shard([batch], shard_dir(str(run), "a.b=c"), shard_name(0, 0))
    write_shard([batch], shard_dir(str(run), "x"), shard_name(1, 3))
    (run / "requests/target=x/_being-written.parquet").write_bytes(b"PAR1")
    (run / "requests/target=x/.hidden.parquet").write_bytes(b"PAR1")
    (run / "requests/target=x/notes.txt").write_text("not a shard")
    (run / "requests/other").mkdir()
    (run / "requests/other/part-0000-000000.parquet").write_bytes(b"PAR1")
    filesystem, path = layout.resolve(str(run))
    found = [(target, p.rsplit("/", 1)[1]) for target, p in layout.shards(filesystem, path)]
    assert found == [("a.b=c", "part-0000-000000.parquet"), ("x", "part-0001-000003.parquet")]


def test_a_failed_publish_leaves_neither_the_file_nor_its_temporary(tmp_path):
    def write(filesystem, path):
        with filesystem.open_output_stream(path) as out:
            out.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        layout.publish(str(tmp_path / "run.json"), write)
    assert list(tmp_path.iterdir()) == []
    layout.publish_bytes(str(tmp_path / "run.json"), b"{}")
    layout.publish_bytes(str(tmp_path / "run.json"), b'{"whole": true}')
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]
    assert (tmp_path / "run.json").read_bytes() == b'{"whole": true}'


@pytest.mark.parametrize(
    ("metadata", "version"),
    [
        (None, 1),
        ({}, 1),
        ({METADATA_KEY: b"1"}, 1),
        ({METADATA_KEY: b"2"}, 2),
        ({METADATA_KEY: b"3"}, 3),
        ({METADATA_KEY: b"4"}, 4),
    ],
)
def test_schema_versions_this_blastradius_reads(metadata, version):
    assert layout.check_schema_version(metadata) == version


@pytest.mark.parametrize("declared", [b"0", b"5", b"99", b"two", b"-1"])
def test_an_unknown_schema_version_is_refused_naming_it(declared):
    with pytest.raises(ValueError, match=f"schema version {declared.decode()} is not one"):
        layout.check_schema_version({METADATA_KEY: declared})


def test_only_the_times_that_may_not_have_happened_and_sessions_are_nullable():
    # Readers rely on it (analysis.load reads the others as plain int64 and categories).
    nullable = [field.name for field in SCHEMA if field.nullable]
    assert nullable == [
        "sent_ns",
        "done_ns",
        "latency_ns",
        "service_ns",
        *("session", "step", "conn", "proto", "connect_ns", "tls_ns", "ttfb_ns", "reset_code"),
    ]


def test_a_run_written_before_sessions_reads_with_no_session_or_step():
    # A schema v2 run (tests/data/run-format-0): the columns v3 added read as null, both
    # loaded and through the lazy dataset.
    run = Path(__file__).parent / "data" / "run-format-0" / "today-20261206T140220Z-bd89"
    shard = next(run.glob("requests/target=*/*.parquet"))
    assert pq.read_schema(shard).metadata[METADATA_KEY] == b"2"
    rows = analysis.load(str(run)).rows
    assert len(rows) > 0 and rows["session"].isna().all() and rows["step"].isna().all()
    assert str(rows["session"].dtype) == "Int64"
    for name in ("conn", "proto", "connect_ns", "tls_ns", "ttfb_ns"):  # and v4's
        assert rows[name].isna().all(), name
    only = analysis.load(str(run), columns=["step", "ok"]).rows
    assert list(only.columns) == ["ok", "step", "target", "run"] and only["step"].isna().all()
    table = analysis.dataset(str(run)).to_table(columns=["session", "seq"])
    assert table.num_rows == len(rows) and table.column("session").null_count == len(rows)
