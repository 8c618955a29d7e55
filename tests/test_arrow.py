"""Arrow arrays to and from numpy through their buffers (workers/arrow.py), and a
generator's whole run without pandas."""

import subprocess
import sys
import textwrap

import numpy as np
import pyarrow as pa
import pytest

from blastradius.workers import arrow

CASES = [
    (pa.int64(), np.array([-(2**63), 0, 2**63 - 1, 5], np.int64)),
    (pa.int32(), np.array([-7, 0, 2**31 - 1, 3], np.int32)),
    (pa.int16(), np.array([200, 504, -1, 0], np.int16)),
    (pa.int32(), np.array([1, 2, 3, 4], np.int64)),  # converted to the column's width
    (pa.bool_(), np.array([True, False, True, True, False, False, True, False, True])),
]


@pytest.mark.parametrize(("kind", "values"), CASES)
def test_a_column_holds_its_values_and_reads_back(kind, values):
    made = arrow.column(kind, values)
    made.validate(full=True)
    assert made.type == kind and made.null_count == 0
    assert made.to_pylist() == values.tolist()
    assert arrow.numpy(made).tolist() == values.tolist()
    assert arrow.valid(made).all()


@pytest.mark.parametrize(("kind", "values"), CASES)
def test_a_slice_reads_from_its_offset(kind, values):
    made = arrow.column(kind, values)
    for start in range(len(values)):
        part = made.slice(start, len(values) - start - 1)
        assert arrow.numpy(part).tolist() == values[start : len(values) - 1].tolist(), start


def test_nulls_are_where_valid_is_false():
    values = np.arange(11, dtype=np.int64)
    valid = values % 3 != 0
    made = arrow.column(pa.int64(), values, valid)
    made.validate(full=True)
    assert made.to_pylist() == [v if v % 3 else None for v in range(11)]
    assert arrow.valid(made).tolist() == valid.tolist()
    assert arrow.valid(made.slice(4, 5)).tolist() == valid[4:9].tolist()
    assert arrow.numpy(made)[valid].tolist() == values[valid].tolist()


@pytest.mark.parametrize("values", [[], [""], ["a"], ["", "kind", "", "日本", "tls"]])
def test_strings(values):
    made = arrow.strings(values)
    made.validate(full=True)
    assert made.type == pa.string() and made.to_pylist() == values


def test_a_generators_run_never_imports_pandas(tmp_path):
    """Rows recorded, counted and written (to a closed port: every one an error) with
    no pandas in the process: its import would cost each generator memory and CPU."""
    code = textwrap.dedent(
        f"""
        import socket, sys
        from blastradius.workers.generator import Share, run_share
        from blastradius.workers.shards import write_shard
        from blastradius.workers.schedule import Schedule
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        url = "http://127.0.0.1:%d/" % closed.getsockname()[1]
        batches = []
        def sink(batch):
            batches.append(batch)
            write_shard([batch], {str(tmp_path)!r}, "shard-%d" % len(batches))
        share = Share("t", (url,), Schedule.constant_rate(200, 500_000_000), 1_000_000_000)
        summary = run_share(share, sink)
        assert sum(b.num_rows for b in batches) == 100, batches
        assert "pandas" not in sys.modules, "pandas was imported"
        print(summary.errors)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "connect" in done.stdout
