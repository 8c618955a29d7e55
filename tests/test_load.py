"""Reading runs back (``analysis.load``) and finding them on disk (``workers.layout``):
what is a run and what is a shard, the frame's types, and messages that stay one line."""

import json

import pandas as pd
import pytest

from blastradius.analysis.load import load
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.record import RowBuffer
from blastradius.workers.shards import write_shard

T0 = 1_790_000_000_000_000_000
MS = 1_000_000


def write_run(run_dir, manifest=None, rows=3):
    run_dir.mkdir(parents=True)
    document = {"run_id": run_dir.name, "status": "completed"} if manifest is None else manifest
    (run_dir / "run.json").write_text(json.dumps(document))
    buffer = RowBuffer(worker=0, node="node-a")
    for i in range(rows):
        buffer.add(i, 0, T0 + i * MS, T0 + i * MS, T0 + (i + 1) * MS, 200 if i else 503, 0, 2)
    write_shard([buffer.close()], shard_dir(str(run_dir), "t"), shard_name(0, 0))
    return run_dir


def test_the_repeated_text_columns_are_categories_and_times_exact_integers(tmp_path):
    rows = load(str(write_run(tmp_path / "run-1"))).rows
    for name in ("target", "node", "error", "run"):
        assert isinstance(rows[name].dtype, pd.CategoricalDtype), name
    assert rows["intended_ns"].dtype == "int64" and rows["seq"].dtype == "int64"
    assert rows["done_ns"].dtype == pd.Int64Dtype()  # may be null: exact, not float
    assert rows["done_ns"].iloc[0] == T0 + MS


def test_a_run_json_without_a_run_id_is_named_by_its_directory(tmp_path):
    write_run(tmp_path / "runs" / "named-by-dir", manifest={"status": "completed"})
    runs = load(str(tmp_path / "runs"))
    assert list(runs.manifests) == ["named-by-dir"]
    assert set(runs.rows["run"]) == {"named-by-dir"}


def test_a_directory_named_run_json_is_not_a_run(tmp_path):
    write_run(tmp_path / "runs" / "real-1")
    (tmp_path / "runs" / "fake-1" / "run.json").mkdir(parents=True)
    assert list(load(str(tmp_path / "runs")).manifests) == ["real-1"]
    with pytest.raises(FileNotFoundError, match=r"no run\.json here"):
        load(str(tmp_path / "runs" / "fake-1"))


def test_a_directory_named_like_a_shard_is_not_a_shard(tmp_path):
    run_dir = write_run(tmp_path / "run-1")
    (run_dir / "requests" / "target=t" / shard_name(0, 1)).mkdir()
    runs = load(str(run_dir))
    assert len(runs.rows) == 3 and runs.skipped == []


def test_a_path_that_is_not_there_says_no_run_is_there(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"/missing: no run\.json here or in the dir"):
        load(str(tmp_path / "missing"))


def test_a_path_with_a_line_break_is_named_on_one_line(tmp_path):
    with pytest.raises(FileNotFoundError) as caught:
        load(str(tmp_path / "two\nlines"))
    assert "\n" not in str(caught.value) and "two\\nlines" in str(caught.value)


def test_an_unreadable_location_is_one_bounded_line_naming_it():
    location = "nosuchscheme://" + "x" * 400
    with pytest.raises(FileNotFoundError) as caught:
        load(location)
    message = str(caught.value)
    assert message.startswith(f"{location}: cannot read it: ") and "\n" not in message
    assert len(message) == len(f"{location}: cannot read it: ") + 200  # the reason, cut


def test_a_skipped_shard_is_one_bounded_line_naming_it(tmp_path):
    run_dir = write_run(tmp_path / "run-1")
    foreign = run_dir / "requests" / "target=t" / shard_name(0, 1)
    pd.DataFrame({"x" * 300: [1]}).to_parquet(foreign)
    truncated = run_dir / "requests" / "target=t" / shard_name(0, 2)
    truncated.write_bytes(b"PAR1" + b"\0" * 64)
    skipped = load(str(run_dir)).skipped
    assert [entry.split(": ", 1)[0] for entry in skipped] == [str(foreign), str(truncated)]
    for entry in skipped:
        reason = entry.split(": ", 1)[1]
        assert "\n" not in entry and 0 < len(reason) <= 160
