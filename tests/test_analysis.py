"""Analysis: hand-worked tables, numpy-exact percentiles, edge cases, and a real run's rows."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_runs import quarter_timing_out

from blastradius.analysis import (
    compare,
    grouped_quantiles,
    load,
    select,
    summarize,
    summary,
    timeline,
)
from blastradius.analysis.load import to_frame
from blastradius.analysis.stats import _gathered_quantiles, recovery_s
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.outcome import DROPPED, HTTP, TIMEOUT
from blastradius.workers.record import NULL_NS, RowBuffer
from blastradius.workers.shards import write_shard

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]  # the CLI, as installed

S, MS = 1_000_000_000, 1_000_000
T0 = 1_790_000_000_000_000_000


def batch(spec: list[tuple], timeout_ns: int = S, worker: int = 0) -> pa.RecordBatch:
    """A record batch from (intended offset, lag, service, status, error code) tuples."""
    buffer = RowBuffer(worker=worker, node="n")
    for seq, (offset, lag, service, status, error) in enumerate(spec):
        intended = T0 + offset
        sent = NULL_NS if lag is None else intended + lag
        done = intended + timeout_ns if sent == NULL_NS else sent + service
        buffer.add(seq, 0, intended, sent, done, status, error, 2)
    return buffer.close()


def rows(target: str, spec: list[tuple], timeout_ns: int = S, worker: int = 0) -> pd.DataFrame:
    """Rows of one target, as ``analysis.load`` gives them."""
    table = pa.Table.from_batches([batch(spec, timeout_ns, worker)])
    return to_frame(table.append_column("target", pa.array([target] * table.num_rows)))


def test_availability_counts_dropped_timed_out_and_http_errors_against_it():
    frame = rows(
        "t",
        [
            (0 * MS, 1 * MS, 10 * MS, 200, 0),
            (10 * MS, 1 * MS, 20 * MS, 200, 0),
            (20 * MS, 1 * MS, 30 * MS, 200, 0),
            (30 * MS, 1 * MS, 40 * MS, 200, 0),
            (40 * MS, 1 * MS, 999 * MS, 0, TIMEOUT),
            (50 * MS, None, None, 0, DROPPED),
            (60 * MS, 1 * MS, 5 * MS, 500, HTTP),
            (70 * MS, 1 * MS, 50 * MS, 200, 0),
        ],
    )
    s = summary(frame)["t"]
    assert (s["requests"], s["ok"], s["availability"]) == (8, 5, 5 / 8)
    assert s["errors"] == {"timeout": 1, "dropped": 1, "http": 1}
    # ok latencies (lag + service): 11, 21, 31, 41, 51 ms; nearest rank.
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"], s["max_ms"]) == (31.0, 51.0, 51.0, 51.0)
    assert s["service_p99_ms"] == 50.0
    # 8 arrivals 10 ms apart: 7 intervals over 0.07 s (to a float's last digits)
    assert s["throughput_rps"] == pytest.approx(100.0, rel=1e-12)
    assert s["goodput_rps"] == pytest.approx(62.5, rel=1e-12)
    assert s["send_lag_p99_ms"] == 1.0 and s["saturated"] is False


def test_the_tail_percentiles_are_each_their_own_nearest_rank():
    # Latencies 1..10000 ms: the nearest rank of q is ceil(q * n).
    frame = rows("t", [(i * MS, 0, (i + 1) * MS, 200, 0) for i in range(10_000)], timeout_ns=20 * S)
    s = summary(frame)["t"]
    assert (s["p50_ms"], s["p90_ms"], s["p99_ms"]) == (5000.0, 9000.0, 9900.0)
    assert (s["p999_ms"], s["p9999_ms"], s["max_ms"]) == (9990.0, 9999.0, 10000.0)


def test_saturation_is_judged_per_generator_not_over_all_of_them():
    # Five late sends of 1005 are under 1% pooled; they are all of generator 1's sends.
    on_time = rows("t", [(i * MS, 1 * MS, 1 * MS, 200, 0) for i in range(1000)], worker=0)
    late = rows("t", [(i * MS, 20 * MS, 1 * MS, 200, 0) for i in range(5)], worker=1)
    assert summary(pd.concat([on_time, late], ignore_index=True))["t"]["saturated"] is True


@pytest.mark.parametrize(("lag_ns", "saturated"), [(10 * MS, False), (10 * MS + 1, True)])
def test_saturation_begins_past_10_ms_of_send_lag(lag_ns, saturated):
    frame = rows("t", [(i * MS, lag_ns, 1 * MS, 200, 0) for i in range(100)])
    assert summary(frame)["t"]["saturated"] is saturated


def test_saturation_is_the_p99_of_a_generators_lag_not_its_worst():
    # One late send of 200 is above the 99th percentile's rank: the p99 is on time.
    spec = [(i * MS, (50 if i == 7 else 1) * MS, 1 * MS, 200, 0) for i in range(200)]
    assert summary(rows("t", spec))["t"]["saturated"] is False


def test_a_generator_lagging_past_10_ms_marks_the_summary_saturated():
    on_time = rows("t", [(i * MS, 1 * MS, 1 * MS, 200, 0) for i in range(100)], worker=0)
    late = rows("t", [(i * MS, 20 * MS, 1 * MS, 200, 0) for i in range(100)], worker=1)
    frame = pd.concat([on_time, late], ignore_index=True)
    assert summary(frame)["t"]["saturated"] is True
    assert summary(on_time)["t"]["saturated"] is False


@pytest.mark.parametrize("case", ["every request failed", "one row", "no ok rows"])
def test_edge_cases_give_none_not_errors(case):
    spec = {
        "every request failed": [(i * MS, None, None, 0, DROPPED) for i in range(5)],
        "one row": [(0, 1 * MS, 2 * MS, 200, 0)],
        "no ok rows": [(i * MS, 1, 5, 503, HTTP) for i in range(3)],
    }[case]
    s = summary(rows("t", spec))["t"]
    assert s["requests"] == len(spec)
    if case == "one row":
        assert s["availability"] == 1.0 and s["p99_ms"] == 3.0
        assert s["throughput_rps"] is None and s["goodput_rps"] is None
    else:
        assert s["availability"] == 0.0 and s["ok"] == 0
        assert s["p50_ms"] is None and s["max_ms"] is None and s["service_p99_ms"] is None


def test_a_run_with_no_rows_at_all(tmp_path):
    _write_run(tmp_path / "empty-run", [])
    runs = load(str(tmp_path / "empty-run"))
    assert runs.rows.empty and runs.skipped == []
    assert summary(runs.rows) == {}
    assert timeline(runs.rows).empty


def test_one_target_with_no_ok_rows_beside_a_healthy_one():
    frame = pd.concat(
        [
            rows("good", [(i * MS, 0, 1 * MS, 200, 0) for i in range(10)]),
            rows("bad", [(i * MS, 0, 1 * MS, 500, HTTP) for i in range(10)]),
        ],
        ignore_index=True,
    )
    frame["target"] = frame["target"].astype("category")
    s = summary(frame)
    assert s["good"]["availability"] == 1.0 and s["bad"]["availability"] == 0.0
    assert s["bad"]["p99_ms"] is None
    line = timeline(frame, S).set_index("target")
    assert line.loc["bad", "availability"] == 0.0 and np.isnan(line.loc["bad", "p99_ms"])


def test_the_default_window_is_one_second():
    frame = rows("t", [(0, 0, MS, 200, 0), (S - 1, 0, MS, 200, 0), (S, 0, MS, 200, 0)])
    assert timeline(frame)["scheduled"].tolist() == [2, 1]


def test_timeline_windows_take_the_start_and_leave_the_end():
    # Windows of 100 ms from the first intended time: 0 and 99.999999 ms fall in window 0,
    # 100 ms exactly in window 1, and 250 ms (a failure) in window 2.
    frame = rows(
        "t",
        [
            (0, 0, 10 * MS, 200, 0),
            (100 * MS - 1, 0, 20 * MS, 200, 0),
            (100 * MS, 0, 30 * MS, 200, 0),
            (250 * MS, None, None, 0, DROPPED),
        ],
    )
    line = timeline(frame, 100 * MS)
    assert line["window"].tolist() == [0, 1, 2]
    assert line["scheduled"].tolist() == [2, 1, 1]
    assert line["ok"].tolist() == [2, 1, 0]
    assert line["availability"].tolist() == [1.0, 1.0, 0.0]
    assert line["goodput_rps"].tolist() == [20.0, 10.0, 0.0]
    assert line["p50_ms"].tolist()[:2] == [10.0, 30.0] and np.isnan(line["p50_ms"].iloc[2])
    assert line["t_s"].tolist() == pytest.approx([0.0, 0.1, 0.2])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 6), st.integers(0, 10**9)), min_size=1, max_size=400),
    st.sampled_from([0.0, 0.001, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0]),
)
def test_grouped_percentiles_equal_numpys_inverted_cdf(pairs, q):
    groups = np.array([g for g, _ in pairs], np.int64)
    values = np.array([v for _, v in pairs], np.int64)
    got = grouped_quantiles(groups, values, 7, {"q": q})["q"]
    for g in range(7):
        mine = values[groups == g]
        if len(mine):
            assert got[g] == np.quantile(mine, q, method="inverted_cdf")
        else:
            assert np.isnan(got[g])


def _write_run(run_dir, batches, target="t"):
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name, "status": "completed"}))
    for n, batch in enumerate(batches):
        write_shard([batch], shard_dir(str(run_dir), target), shard_name(0, n))


def test_truncated_and_foreign_files_are_reported_by_name_and_skipped(tmp_path):
    run_dir = tmp_path / "run-1"
    buffer = RowBuffer(worker=0, node="n")
    buffer.add(0, 0, T0, T0, T0 + MS, 200, 0, 2)
    _write_run(run_dir, [buffer.close()])
    shards = run_dir / "requests" / "target=t"
    good = (shards / "part-0000-000000.parquet").read_bytes()
    (shards / "part-0000-000001.parquet").write_bytes(good[: len(good) // 2])
    pd.DataFrame({"x": [1]}).to_parquet(shards / "part-0000-000002.parquet")
    (shards / "_inflight-part.parquet").write_bytes(b"partial")
    runs = load(str(run_dir))
    assert len(runs.rows) == 1
    assert [entry.split(":")[0].rsplit("/", 1)[-1] for entry in runs.skipped] == [
        "part-0000-000001.parquet",
        "part-0000-000002.parquet",
    ]
    assert "not a blastradius shard (no worker column)" in runs.skipped[1]


def test_schema_v1_shards_with_32_bit_bytes_in_still_load(tmp_path):
    import pyarrow.parquet as pq

    from blastradius.workers.record import METADATA_KEY

    new = pa.Table.from_batches([batch([(0, 0, MS, 200, 0)])])
    v1_schema = new.schema.set(
        new.schema.get_field_index("bytes_in"), pa.field("bytes_in", pa.int32(), nullable=False)
    ).with_metadata({METADATA_KEY: b"1"})
    run_dir = tmp_path / "run-v1"
    _write_run(run_dir, [])
    shards = run_dir / "requests" / "target=old"
    shards.mkdir(parents=True)
    pq.write_table(new.cast(v1_schema), shards / "part-0000-000000.parquet")
    runs = load(str(run_dir))
    assert not runs.skipped
    assert runs.rows["bytes_in"].tolist() == [2] and runs.rows["bytes_in"].dtype == "int64"


def test_a_shard_of_an_unknown_schema_version_is_skipped_and_named(tmp_path):
    import pyarrow.parquet as pq

    from blastradius.workers.record import METADATA_KEY

    table = pa.Table.from_batches([batch([(0, 0, MS, 200, 0)])])
    run_dir = tmp_path / "run-future"
    _write_run(run_dir, [batch([(0, 0, MS, 200, 0)])])
    future = table.replace_schema_metadata({METADATA_KEY: b"99"})
    pq.write_table(future, run_dir / "requests" / "target=t" / "part-0001-000000.parquet")
    runs = load(str(run_dir))
    assert len(runs.rows) == 1
    (skipped,) = runs.skipped
    assert "part-0001-000000.parquet: schema version 99 is not one this blastradius reads" in (
        skipped
    )


def test_a_real_runs_parquet_read_with_plain_pandas_agrees_with_analyze_json(tmp_path):
    run_dir = quarter_timing_out(tmp_path / "real-run")
    result = subprocess.run(
        [*BLASTRADIUS, "analyze", str(run_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    reported = json.loads(result.stdout)["targets"]["async"]

    plain = pd.read_parquet(run_dir / "requests")
    ok = plain[plain["ok"]]
    assert reported["requests"] == len(plain) == 200
    assert reported["availability"] == len(ok) / len(plain) == 0.75
    p99 = np.quantile(ok["latency_ns"].to_numpy(), 0.99, method="inverted_cdf") / 1e6
    assert reported["p99_ms"] == p99
    assert reported["errors"] == {"timeout": 50}


def _summary(availability, goodput, p99, errors=0):
    return {
        "requests": 100,
        "availability": availability,
        "goodput_rps": goodput,
        "p50_ms": 1.0,
        "p99_ms": p99,
        "p999_ms": p99,
        "max_ms": p99,
        "errors": {"timeout": errors} if errors else {},
    }


def test_compare_puts_targets_side_by_side_with_ratios_to_the_first():
    from blastradius.analysis import compare

    table = compare(
        {
            "async": _summary(0.9, 90.0, 50.0, 10),
            "sync": _summary(0.15, 15.0, 900.0, 85),
            "empty": _summary(0.0, 0.0, None, 100),
        }
    ).set_index("name")
    assert table.loc["sync", "availability_delta"] == pytest.approx(-0.75)
    assert table.loc["sync", "goodput_x"] == pytest.approx(1 / 6)
    assert table.loc["sync", "p99_x"] == pytest.approx(18.0)
    assert table.loc["async", ["goodput_x", "p99_x"]].tolist() == [1.0, 1.0]
    assert table.loc["sync", "errors"] == 85
    assert np.isnan(table.loc["empty", "p99_x"])
    assert compare({}).empty
    assert (
        compare({"a": _summary(1.0, 10.0, 5.0), "b": _summary(1.0, 20.0, 10.0)}, baseline="b")
        .set_index("name")
        .loc["a", "p99_x"]
        == 0.5
    )


def test_the_compare_command_reads_several_runs(tmp_path, capsys):
    from blastradius.cluster.cli import main

    for name, service in (("run-a", 10 * MS), ("run-b", 40 * MS)):
        _write_run(tmp_path / name, [batch([(i * MS, 0, service, 200, 0) for i in range(20)])])
    assert main(["compare", str(tmp_path / "run-a"), str(tmp_path / "run-b")]) == 0
    out = capsys.readouterr().out.splitlines()
    b_line = next(line for line in out if line.startswith("run-b/t"))
    assert b_line.split()[-1] == "4.00"  # p99 40 ms over the baseline's 10 ms


def _write_scenario_run(run_dir, scenario, services_ms: dict[str, int]):
    """A run of ``scenario`` whose targets (in this order) answer in the given times."""
    run_dir.mkdir(parents=True)
    manifest = {
        "run_id": run_dir.name,
        "status": "completed",
        "scenario": {"name": scenario},
        "targets": {name: {} for name in services_ms},
    }
    (run_dir / "run.json").write_text(json.dumps(manifest))
    for target, ms in services_ms.items():
        rows = batch([(i * MS, 0, ms * MS, 200, 0) for i in range(20)])
        write_shard([rows], shard_dir(str(run_dir), target), shard_name(0, 0))


def test_runs_in_one_directory_are_never_merged_or_dropped(tmp_path, capsys):
    """Three runs of one scenario: analyze and compare show 3 x 2 series, in run order and
    each scenario's order of targets (sync before async, not by name)."""
    from blastradius.cluster.cli import main

    for n, ms in enumerate((10, 20, 30)):
        _write_scenario_run(tmp_path / f"smoke-{n}", "smoke", {"sync": ms, "async": 5})
    assert main(["compare", str(tmp_path)]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]]
    assert names == [f"smoke-{n}/{t}" for n in range(3) for t in ("sync", "async")]
    assert main(["analyze", str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[0] for line in table] == names
    assert [int(line.split()[1]) for line in table] == [20] * 6


def test_compare_of_one_run_keeps_the_scenario_order_and_takes_rows(tmp_path, capsys):
    from blastradius.analysis.series import series_rows
    from blastradius.cluster.cli import main

    _write_scenario_run(tmp_path / "run", "smoke", {"sync": 40, "async": 10})
    assert main(["compare", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:]] == ["sync", "async"]  # sync is the baseline
    runs = load(str(tmp_path / "run"))
    table = compare(series_rows(runs)).set_index("name")
    assert list(table.index) == ["sync", "async"] and table.loc["async", "p99_x"] == 0.25
    assert set(compare(runs.rows)["name"]) == {"sync", "async"}


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(-(10**12), 10**12), st.booleans()),
        min_size=1,
        max_size=500,
    ),
    st.lists(st.sampled_from([0.0, 0.001, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0]), min_size=1),
    st.sampled_from([1, 7, 1 << 20]),
)
def test_chunked_selection_equals_numpys_inverted_cdf(triples, qs, chunk):
    groups = np.array([g for g, _, _ in triples], np.uint8)
    values = np.array([v for _, v, _ in triples], np.int64)
    where = np.array([w for _, _, w in triples], bool)
    for mask in (None, where):
        picked, counts = select.select_grouped(groups, values, 5, np.array(qs), mask, chunk)
        for g in range(5):
            mine = values[(groups == g) & (True if mask is None else mask)]
            assert counts[g] == len(mine)
            if len(mine):
                assert picked[g].tolist() == np.quantile(mine, qs, method="inverted_cdf").tolist()
            else:
                assert np.isnan(picked[g]).all()
    # The path for more groups than a histogram holds gives the same answers.
    gathered = _gathered_quantiles(groups, values, 5, np.array(qs))
    assert np.array_equal(
        gathered, select.select_grouped(groups, values, 5, np.array(qs))[0], equal_nan=True
    )


def test_chunked_selection_with_many_equal_values_and_a_wide_range():
    values = np.array([5] * 1000 + [10**15, -(10**15)], np.int64)
    groups = np.zeros(len(values), np.uint8)
    qs = [0.0, 0.5, 0.998, 0.9999, 1.0]
    picked, _ = select.select_grouped(groups, values, 1, np.array(qs))
    assert picked[0].tolist() == np.quantile(values, qs, method="inverted_cdf").tolist()
    assert picked[0].tolist() == [-(10**15), 5, 5, 10**15, 10**15]


def _mixed_rows(seed: int) -> pd.DataFrame:
    """Targets of 1, 1, 2 and 400 rows (two generators, one lagging; failures of three
    kinds; a one-request target's second generator sends nothing), at small absolute
    times, so that a window count taken from a wrong origin stays small enough to
    compute."""
    rng = np.random.default_rng(seed)
    frames = []
    for target, n in (("one", 1), ("solo", 1), ("two", 2), ("many", 400)):
        for worker in (0, 1):
            buffer = RowBuffer(worker=worker, node="n")
            mine = range(worker, n, 2)
            for seq, i in enumerate(mine):
                intended = 5 * S + int(i * 3.7 * S / max(n - 1, 1))
                lag = int(rng.exponential(3 * MS if worker else 0.2 * MS))
                if target == "one":
                    lag = 15 * MS  # a generator of one request, past the saturation mark
                service = int(rng.lognormal(np.log(20 * MS), 0.8))
                error = int(rng.choice([0, 0, 0, 0, TIMEOUT, HTTP, DROPPED])) if n > 2 else 0
                sent = NULL_NS if error == DROPPED else intended + lag
                done = intended + S if sent == NULL_NS else sent + service
                status = 503 if error == HTTP else (0 if error in (TIMEOUT, DROPPED) else 200)
                buffer.add(seq, 0, intended, sent, done, status, error, 2)
            if len(mine):
                table = pa.Table.from_batches([buffer.close()])
                frames.append(
                    to_frame(table.append_column("target", pa.array([target] * table.num_rows)))
                )
    return pd.concat(frames, ignore_index=True)


def _rank(values: pd.Series, q: float) -> float:
    return float(np.quantile(values.to_numpy(np.int64), q, method="inverted_cdf")) / MS


@pytest.mark.parametrize("seed", [1, 2])
def test_summary_of_several_targets_equals_plain_pandas(seed):
    frame = _mixed_rows(seed)
    got = summary(frame)
    assert list(got) == ["many", "one", "solo", "two"]
    for target, mine in frame.groupby("target", observed=True):
        s, ok = got[target], mine[mine["ok"]]
        span = (mine["intended_ns"].max() - mine["intended_ns"].min()) / 1e9
        assert s["requests"] == len(mine) and s["ok"] == len(ok)
        assert s["availability"] == pytest.approx(len(ok) / len(mine))
        expected = (len(mine) - 1) / span if len(mine) > 1 else None
        assert s["throughput_rps"] == pytest.approx(expected)
        for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99), ("p999_ms", 0.999), ("max_ms", 1)):
            assert s[name] == pytest.approx(_rank(ok["latency_ns"], q))
        assert s["service_p99_ms"] == pytest.approx(_rank(ok["service_ns"], 0.99))
        sent = mine[mine["sent_ns"].notna()]
        lag = sent["sent_ns"] - sent["intended_ns"]
        assert s["send_lag_p99_ms"] == pytest.approx(_rank(lag, 0.99))
        late = [_rank(lag[sent["worker"] == w], 0.99) > 10 for w in sorted(set(sent["worker"]))]
        assert s["saturated"] == any(late)
        errors = mine.loc[mine["error"] != "", "error"].astype(str).value_counts().to_dict()
        assert s["errors"] == errors

    assert got["one"]["saturated"] and not got["solo"]["saturated"]


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("window", [300 * MS, 2 * S])
def test_timeline_of_several_targets_equals_plain_pandas(seed, window):
    frame = _mixed_rows(seed)
    line = timeline(
        frame, window, quantiles={"p999_ms": 0.999}, service={"service_p99_ms": 0.99}
    ).set_index(["target", "window"])
    expected_cells = 0
    for target, mine in frame.groupby("target", observed=True):
        index = (mine["intended_ns"] - mine["intended_ns"].min()) // window
        for w, cell in mine.groupby(index):
            expected_cells += 1
            row, ok = line.loc[(target, w)], cell[cell["ok"]]
            assert row["t_s"] == pytest.approx(w * window / 1e9)
            assert (row["scheduled"], row["ok"]) == (len(cell), len(ok))
            assert row["availability"] == pytest.approx(len(ok) / len(cell))
            assert row["goodput_rps"] == pytest.approx(len(ok) / (window / 1e9))
            for name, column, q in (
                ("p50_ms", "latency_ns", 0.5),
                ("p90_ms", "latency_ns", 0.9),
                ("p99_ms", "latency_ns", 0.99),
                ("p999_ms", "latency_ns", 0.999),
                ("service_p99_ms", "service_ns", 0.99),
            ):
                if len(ok):
                    assert row[name] == pytest.approx(_rank(ok[column], q))
                else:
                    assert np.isnan(row[name])
    assert len(line) == expected_cells


def test_percentiles_of_more_groups_than_a_histogram_holds_take_the_mask():
    # Past 65,536 groups the values are gathered per group instead: only rows in ``where``.
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 70_000, 200_000)
    values = rng.integers(0, 10**9, 200_000)
    where = rng.random(200_000) < 0.5
    got = grouped_quantiles(groups, values, 70_000, {"p50": 0.5}, where)["p50"]
    frame = pd.DataFrame({"g": groups[where], "v": values[where]})
    expected = frame.groupby("g")["v"].quantile(0.5, interpolation="lower")
    present = expected.index.to_numpy()
    assert np.array_equal(got[present], expected.to_numpy())
    assert np.isnan(np.delete(got, present)).all()


def test_a_timeline_of_some_targets_ignores_the_categories_left_unused():
    frame = _mixed_rows(1)
    frame["target"] = frame["target"].astype("category")  # as a run's shards read
    some = frame[frame["target"] == "many"]
    alone = some.assign(target=some["target"].astype(str))
    pd.testing.assert_frame_equal(
        timeline(some, S).drop(columns="target"), timeline(alone, S).drop(columns="target")
    )


def test_a_summary_of_hundreds_of_groups_keeps_each_apart():
    # Past 255 groups the group codes no longer fit a byte.
    frame = _mixed_rows(2)
    frame = frame[frame["target"] == "many"].assign(endpoint=np.arange(400) // 2 * 3)
    got = summary(frame, by="endpoint")
    assert len(got) == 200 and list(got) == sorted(got)
    frame = frame.assign(endpoint=np.arange(400))
    got = summary(frame, by="endpoint")
    assert len(got) == 400
    for endpoint, mine in frame.groupby("endpoint"):
        assert got[endpoint]["requests"] == 1
        assert got[endpoint]["ok"] == int(mine["ok"].sum())


def test_one_groups_summary_and_summaries_by_several_columns_equal_plain_pandas():
    frame = _mixed_rows(1)
    many = frame[frame["target"] == "many"]
    assert summarize(many) == summary(many)["many"]
    got = summary(frame, by=["target", "worker"])
    expected = frame.groupby(["target", "worker"])["ok"].agg(["size", "sum"])
    assert sorted(got) == sorted(expected.index)
    for key, (size, ok) in expected.iterrows():
        assert (got[key]["requests"], got[key]["ok"]) == (size, ok)


def test_a_text_table_pads_each_cell_to_its_column_and_cuts_none():
    from blastradius.analysis.table import Column, text_table

    columns = [Column("name", 6, left=True), Column("n", 4), Column("note", left=True, gap=2)]
    assert text_table(columns, [["a", "12", "x y"], ["bbbbbbb", "3", ""]]) == [
        "name     n  note",
        "a       12  x y",
        "bbbbbbb   3  ",
    ]


@pytest.mark.parametrize(
    ("availability", "heal_s", "recovered"),
    [
        ([1, 0, 0, 0, 1, 1], 2.0, 2.0),  # windows 2 and 3 below, then good to the end
        ([1, 0, 0, 1, 0, 1], 2.0, 3.0),  # a relapse: from the last window below on
        ([1, 0, 1, 1, 1, 1], 2.0, 0.0),  # good from the heal on
        ([1, 0, 0, 0, 0, 0], 2.0, None),  # not recovered when the load ended
        ([1, 1, 1, 1, 1, 0.98], 2.0, None),  # the floor is the floor
        ([1, 1, 1, 1, 1, 1], 6.0, None),  # no window after the heal
        ([0, 0, 0, 0.99, 1, 1], 2.5, 0.5),  # the first good window begins after it
    ],
)
def test_recovery_is_from_the_heal_to_the_first_window_that_stays_above_the_floor(
    availability, heal_s, recovered
):
    t_s = np.arange(6, dtype=float)
    assert recovery_s(t_s, np.array(availability, dtype=float), heal_s, 0.99) == recovered
