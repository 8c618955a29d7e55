"""Summaries over a run's files (``analysis.scan``): figure for figure what ``summary``
gives over the loaded rows, for runs of several targets, generators and shards."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from blastradius.analysis import load, summary
from blastradius.analysis import timeline as stats_timeline
from blastradius.analysis.load import locate
from blastradius.analysis.scan import (
    curve_fractions,
    curves,
    endpoint_availability,
    readable,
    sample_shards,
    spans,
    step_summaries,
    summaries,
    timeline,
)
from blastradius.analysis.select import CHUNK, Selection, buckets
from blastradius.workers.kinds import ERROR_KINDS
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.record import NULL_NS, RowBuffer
from blastradius.workers.shards import write_shard

S, MS, US = 1_000_000_000, 1_000_000, 1_000
T0 = 1_790_000_000_000_000_000
CODES = list(range(len(ERROR_KINDS)))


def write_run(
    run_dir, rng: np.random.Generator, targets: dict[str, int], sessions: bool = False
) -> None:
    """A run whose targets have the given numbers of rows, over three generators and
    shards of random sizes: failures of every kind, unsent requests, latencies from
    microseconds to seconds (ties included), one generator lagging past 10 ms. With
    ``sessions``, rows are sessions' steps (step: the endpoint, 0 to 3)."""
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name, "status": "completed"}))
    for target, n in targets.items():
        intended = T0 + np.sort(rng.integers(0, 60 * S, n))
        worker = rng.integers(0, 3, n)
        lag = np.where(worker == 2, rng.integers(0, 30 * MS, n), rng.integers(0, 300 * US, n))
        sent = np.where(rng.random(n) < 0.05, NULL_NS, intended + lag)
        service = np.round(rng.lognormal(np.log(20 * MS), 1.5, n), -4).astype(np.int64)
        error = np.where(rng.random(n) < 0.1, rng.choice(CODES, n), 0)
        status = np.where(error == 0, 200, 0)
        buffers = {w: RowBuffer(worker=w, node="n", sessions=sessions) for w in range(3)}
        cuts = sorted(rng.integers(0, n, 4).tolist())
        for i in range(n):
            done = intended[i] + S if sent[i] == NULL_NS else sent[i] + service[i]
            buffers[int(worker[i])].add(
                i,
                i % 4,
                int(intended[i]),
                int(sent[i]),
                int(done),
                int(status[i]),
                int(error[i]),
                2,
                i // 4,
            )
            if i in cuts or i == n - 1:
                for w, buffer in buffers.items():
                    shard = buffer.close()
                    if shard is not None:
                        write_shard([shard], shard_dir(str(run_dir), target), shard_name(w, i))
                    buffers[w] = RowBuffer(worker=w, node="n", sessions=sessions)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_runs_summaries_from_its_files_equal_those_of_its_loaded_rows(tmp_path, seed):
    write_run(tmp_path / "run", np.random.default_rng(seed), {"a": 3000, "b": 700, "c": 1})
    _, shards = locate(str(tmp_path / "run"))
    good, skipped = readable(shards)
    streamed = summaries(good, lambda shard: shard.target)
    assert not skipped and streamed == summary(load(str(tmp_path / "run")).rows)
    assert streamed["a"]["saturated"] and streamed["a"]["errors"]


def write_long_shard(run_dir, rng: np.random.Generator, n: int) -> None:
    """A run of target t whose rows are one generator's, in one shard of ``n`` rows:
    latencies from microseconds to seconds, a tenth failed."""
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_dir.name, "status": "completed"}))
    intended = T0 + np.arange(n) * 200 * US
    service = np.round(rng.lognormal(np.log(20 * MS), 1.5, n), -4).astype(np.int64)
    error = np.where(rng.random(n) < 0.1, rng.choice(CODES, n), 0)
    buffer = RowBuffer(worker=0, node="n")
    rows = zip(intended.tolist(), service.tolist(), error.tolist(), strict=True)
    for i, (at, took, kind) in enumerate(rows):
        buffer.add(i, i % 4, at, at, at + took, 0 if kind else 200, kind, 2)
    write_shard([buffer.close()], shard_dir(str(run_dir), "t"), shard_name(0, 0))


def test_a_shard_longer_than_a_batch_and_several_runs_as_series(tmp_path):
    rng = np.random.default_rng(9)
    write_long_shard(tmp_path / "runs" / "one", rng, CHUNK + 1000)
    write_run(tmp_path / "runs" / "two", rng, {"t": 500})
    _, shards = locate(str(tmp_path / "runs"))
    streamed = summaries(readable(shards)[0], lambda shard: f"{shard.run}/{shard.target}")
    rows = load(str(tmp_path / "runs")).rows
    series = rows["run"].astype(str) + "/" + rows["target"].astype(str)
    assert list(streamed) == ["one/t", "two/t"]
    assert streamed == summary(rows.assign(series=series), by="series")
    windows = timeline(readable(shards)[0], lambda shard: shard.run, quantiles={"p999_ms": 0.999})
    pd.testing.assert_frame_equal(
        windows.drop(columns="target"),
        stats_timeline(rows.assign(target=rows["run"]), quantiles={"p999_ms": 0.999}).drop(
            columns="target"
        ),
    )


def test_unreadable_shards_are_named_and_left_out_before_any_row_is_read(tmp_path):
    write_run(tmp_path / "run", np.random.default_rng(4), {"t": 50})
    folder = tmp_path / "run" / "requests" / "target=t"
    good = sorted(folder.iterdir())[0].read_bytes()
    (folder / "part-0009-000001.parquet").write_bytes(good[: len(good) // 2])
    pd.DataFrame({"x": [1]}).to_parquet(folder / "part-0009-000002.parquet")
    _, shards = locate(str(tmp_path / "run"))
    kept, skipped = readable(shards)
    loaded = load(str(tmp_path / "run"))
    assert [entry.split(": ")[0] for entry in skipped] == [
        entry.split(": ")[0] for entry in loaded.skipped
    ]
    assert skipped[1] == loaded.skipped[1] and "not a blastradius shard" in skipped[1]
    assert len(kept) == len(shards) - 2
    assert summaries(kept, lambda shard: shard.target) == summary(loaded.rows)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([-5, 0], [0, 0]),  # nothing below 0: a negative shares 0's bucket
        ([1], [1024]),  # float64(2): one octave up
        ([127, 128], [7 * 1024, 7 * 1024 + 8]),  # float64(128) and float64(129)
        ([2**62, 2**63 - 1], [62 * 1024, 62 * 1024]),  # clipped at 2**62
    ],
)
def test_buckets_are_ordered_and_log_spaced(values, expected):
    assert buckets(np.array(values, np.int64)).tolist() == expected


def test_a_bucket_is_under_a_tenth_of_a_percent_wide():
    values = np.unique(np.random.default_rng(0).integers(1000, 10**12, 100_000))
    key = buckets(values)
    assert (np.diff(key) >= 0).all()
    for k in np.unique(key)[:: len(np.unique(key)) // 50]:
        members = values[key == k]
        assert members.max() <= members.min() * 1.001


@pytest.mark.parametrize(
    ("window_ns", "start", "quantiles", "service"),
    [
        (S, None, None, None),
        (7 * S, -5 * S, {"p999_ms": 0.999}, {"service_p99_ms": 0.99}),
        (100 * MS, None, {"max_ms": 1.0}, None),
    ],
)
def test_a_runs_timeline_from_its_files_equals_that_of_its_loaded_rows(
    tmp_path, window_ns, start, quantiles, service
):
    write_run(tmp_path / "run", np.random.default_rng(5), {"a": 4000, "b": 900})
    _, shards = locate(str(tmp_path / "run"))
    start_ns = None if start is None else T0 + start
    streamed = timeline(
        readable(shards)[0], lambda shard: shard.target, window_ns, start_ns, quantiles, service
    )
    rows = load(str(tmp_path / "run")).rows
    loaded = stats_timeline(rows, window_ns, start_ns, quantiles, service)
    pd.testing.assert_frame_equal(streamed, loaded)
    # A window's time is where it starts, in seconds: whole windows from the first.
    assert streamed["t_s"].tolist() == [w * window_ns / S for w in streamed["window"]]
    assert streamed["t_s"].iloc[-1] * S == streamed["window"].iloc[-1] * window_ns


def test_the_timeline_of_no_rows_has_the_columns_of_one(tmp_path):
    write_run(tmp_path / "run", np.random.default_rng(6), {"a": 10})
    _, shards = locate(str(tmp_path / "run"))
    empty = timeline([], lambda shard: shard.target, quantiles={"p999_ms": 0.999})
    full = timeline(shards, lambda shard: shard.target, quantiles={"p999_ms": 0.999})
    assert empty.empty and list(empty.columns) == list(full.columns)


def test_objectives_judged_from_files_equal_those_judged_from_loaded_rows(tmp_path):
    from blastradius.analysis import slo
    from blastradius.analysis.scan import FileFigures
    from blastradius.workers.run_record import Objectives

    write_run(tmp_path / "run", np.random.default_rng(8), {"a": 3000, "b": 800})
    _, shards = locate(str(tmp_path / "run"))
    rows = load(str(tmp_path / "run")).rows
    goals = {
        "a": Objectives((("availability", 0.95), ("p99", 400.0), ("errors.timeout", 0.01))),
        "b": Objectives((("availability", 0.92), ("p999", 900.0), ("service_p99", 500.0)), 7 * S),
        "none": Objectives((("availability", 0.5),)),  # no rows: nothing met
    }
    starts = {"b": T0 - 3 * S}
    from_files = slo.check_figures(FileFigures(shards), goals, starts)
    assert from_files == slo.check(rows, goals, starts)
    assert any(v.breaches for v in from_files) and not all(v.met for v in from_files)


def test_the_reports_per_endpoint_and_histogram_counts_equal_the_loaded_rows(tmp_path):
    from blastradius.analysis.scan import endpoint_availability, latency_counts

    write_run(tmp_path / "run", np.random.default_rng(10), {"a": 2000, "b": 500})
    _, shards = locate(str(tmp_path / "run"))
    rows = load(str(tmp_path / "run")).rows
    by_endpoint = summary(rows, by=["target", "endpoint"])  # four endpoints a target
    streamed = endpoint_availability(shards, lambda shard: shard.target)
    assert len(streamed) == 8
    assert streamed == {k: {"availability": v["availability"]} for k, v in by_endpoint.items()}
    edges = np.geomspace(0.01, 100_000, 60)
    counts = latency_counts(shards, lambda shard: shard.target, edges)
    for target, mine in rows[rows["ok"]].groupby("target", observed=True):
        values = mine["latency_ns"].to_numpy(dtype=np.float64) / MS
        assert (counts[str(target)] == np.histogram(values, bins=edges)[0]).all()


def test_a_bucket_starts_at_its_first_value():
    from blastradius.analysis.select import first_of_buckets

    rng = np.random.default_rng(11)
    values = np.concatenate([rng.integers(-5, 10**13, 2000), [0, 1, 2, 2**53 + 1]])
    keys = np.unique(buckets(values))
    first = first_of_buckets(keys)
    assert (buckets(first[keys > 0]) == keys[keys > 0]).all()  # in its bucket...
    assert (buckets(first[keys > 0] - 1) < keys[keys > 0]).all()  # ...and the first there
    assert first[keys == 0][0] == np.iinfo(np.int64).min
    assert first_of_buckets(np.array([63 << 10]))[0] == np.iinfo(np.int64).max  # past the end


def _select_in_one_pass(batches, sample: int, qs):
    """Selection over ``batches`` as ``summaries`` runs it: the first ``sample`` batches
    counted, ``keep_near``, the rest counted (and kept near); then the sample gathered
    again, and every other batch only where the guess missed."""
    selection = Selection(1, {"v": dict(enumerate(qs))})
    for i, values in enumerate(batches):
        selection.count(0, {"v": (values, np.ones(len(values), bool))})
        if i == sample - 1:
            selection.keep_near()
    missing = selection.missing
    for i, values in enumerate(batches):
        if i < sample or missing:
            selection.gather(0, {"v": (values, np.ones(len(values), bool))}, i >= sample)
    return selection.finish()["v"][0], missing


@pytest.mark.parametrize(
    ("scale_of_later_batches", "missed"),
    [
        (1.0, False),  # the sample is like the rest: one pass, and the sample's again
        (3.0, True),  # the later batches are slower: the guess misses, a second pass
        (0.2, True),  # faster
    ],
)
def test_a_guess_from_a_sample_keeps_the_wanted_values_or_says_it_missed(
    scale_of_later_batches, missed
):
    rng = np.random.default_rng(5)
    qs = [0.0001, 0.5, 0.9, 0.99, 0.999, 0.9999, 1.0]
    first = [rng.lognormal(np.log(20 * MS), 1.0, 20_000).astype(np.int64) for _ in range(2)]
    later = [
        (rng.lognormal(np.log(20 * MS), 1.0, 20_000) * scale_of_later_batches).astype(np.int64)
        for _ in range(18)
    ]
    batches = first + later
    picked, missing = _select_in_one_pass(batches, 2, qs)
    every = np.concatenate(batches)
    assert missing == missed
    assert (picked == np.quantile(every, qs, method="inverted_cdf")).all()


def test_a_run_whose_sample_shards_are_unlike_the_others_is_still_exact(tmp_path, monkeypatch):
    """Twelve shards a target, those of the sample ten times slower than the others:
    the guess misses, and the second pass over every shard finds the wanted ranks."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"run_id": "run", "status": "completed"}))
    rng = np.random.default_rng(8)
    slow = set(sample_shards([0] * 12))
    for k in range(12):
        buffer = RowBuffer(worker=0, node="n")
        for i in range(300):
            intended = T0 + (k * 300 + i) * MS
            latency = int(rng.lognormal(np.log(10 * MS if k in slow else MS), 0.3))
            buffer.add(k * 300 + i, 0, intended, intended, intended + latency, 200, 0, 2)
        write_shard([buffer.close()], shard_dir(str(run), "t"), shard_name(0, k))
    missed = []
    guessed = Selection.missing.fget
    spy = property(lambda s: missed.append(guessed(s)) or missed[-1])
    monkeypatch.setattr(Selection, "missing", spy)
    _, shards = locate(str(run))
    assert len(shards) == 12 and 0 < len(slow) < 12
    assert summaries(shards, lambda shard: shard.target) == summary(load(str(run)).rows)
    assert missed == [True]


def test_a_guess_that_keeps_too_much_is_given_up_and_the_second_pass_is_whole(monkeypatch):
    from blastradius.analysis import select

    monkeypatch.setattr(select, "KEEP_LIMIT", 5_000)
    rng = np.random.default_rng(6)
    batches = [rng.integers(0, 10 * MS, 20_000) for _ in range(6)]
    picked, missing = _select_in_one_pass(batches, 1, [0.5, 0.99, 1.0])
    assert missing
    every = np.concatenate(batches)
    assert (picked == np.quantile(every, [0.5, 0.99, 1.0], method="inverted_cdf")).all()


def test_load_takes_some_columns_targets_and_a_window_of_intended_time(tmp_path):
    write_run(tmp_path / "run", np.random.default_rng(12), {"a": 900, "b": 300})
    every = load(str(tmp_path / "run")).rows
    start, end = T0 + 10 * S, T0 + 40 * S
    some = load(
        str(tmp_path / "run"),
        columns=["latency_ns", "intended_ns"],
        targets=["a"],
        start_ns=start,
        end_ns=end,
    ).rows
    expected = every[
        (every["target"] == "a") & (every["intended_ns"] >= start) & (every["intended_ns"] < end)
    ]
    assert list(some.columns) == ["intended_ns", "latency_ns", "target", "run"]
    assert 0 < len(some) < len(every)
    key = ["intended_ns", "latency_ns"]
    assert (
        some[key].sort_values(key).to_numpy().tolist()
        == expected[key].sort_values(key).to_numpy().tolist()
    )


def test_load_names_a_column_that_is_not_a_shards():
    with pytest.raises(ValueError, match="columns: 'latency_ms' is not a shard column"):
        load("/nowhere", columns=["latency_ms"])


def test_a_run_as_a_dataset_holds_the_loaded_rows_and_reads_only_what_is_asked(tmp_path):
    import pyarrow.compute as pc

    from blastradius.analysis import dataset

    write_run(tmp_path / "runs" / "one", np.random.default_rng(13), {"a": 500, "b": 200})
    write_run(tmp_path / "runs" / "two", np.random.default_rng(14), {"a": 100})
    rows = load(str(tmp_path / "runs")).rows
    lazy = dataset(str(tmp_path / "runs"))
    table = lazy.to_table(columns=["seq", "target", "run"], filter=pc.field("target") == "a")
    got = sorted(zip(*(table[c].to_pylist() for c in ("run", "target", "seq")), strict=True))
    mine = rows[rows["target"] == "a"]
    assert got == sorted(
        zip(mine["run"].astype(str), mine["target"].astype(str), mine["seq"], strict=True)
    )
    assert lazy.count_rows() == len(rows)


@pytest.mark.parametrize(
    ("codes", "sample"),
    [
        ([], []),
        ([0], [0]),  # one shard: it is the sample
        ([0] * 5, [2]),  # under ten: one, from the middle
        ([0] * 10, [5]),
        ([0] * 11, [2, 8]),  # over ten: two, spread
        ([0] * 30, [5, 15, 25]),
        ([0, 1, 0, 1], [2, 3]),  # each series its own
        ([1, 1, 0], [1, 2]),
    ],
)
def test_a_summarys_sample_is_one_shard_in_ten_of_each_series_spread_over_it(codes, sample):
    assert sample_shards(codes) == sample


def test_a_cell_the_sample_did_not_see_is_missing_whole():
    from blastradius.analysis.select import Selection

    selection = Selection(2, {"v": {"p50": 0.5}})
    values = np.arange(1, 1001, dtype=np.int64)
    selection.count(0, {"v": (values, np.ones(1000, bool))})
    selection.keep_near()  # cell 1 has no counts yet: nothing of it is kept
    selection.count(1, {"v": (values * 7, np.ones(1000, bool))})
    assert selection.missing
    selection.gather(0, {"v": (values, np.ones(1000, bool))})  # the sample, read again
    selection.gather(1, {"v": (values * 7, np.ones(1000, bool))}, missing=True)
    assert selection.finish()["v"][:, 0].tolist() == [500.0, 3500.0]


@pytest.mark.parametrize("seed", [4, 5])
def test_a_session_targets_step_summaries_equal_those_of_its_loaded_rows(tmp_path, seed):
    write_run(tmp_path / "run", np.random.default_rng(seed), {"a": 2000}, sessions=True)
    _, shards = locate(str(tmp_path / "run"))
    rows = load(str(tmp_path / "run")).rows
    loaded = summary(rows, by="step")
    # Four steps with rows, a fifth without: None.
    assert step_summaries(shards, 5) == [loaded[0], loaded[1], loaded[2], loaded[3], None]
    # A target of no session has no step in its rows.
    write_run(tmp_path / "plain", np.random.default_rng(seed), {"b": 100})
    _, plain = locate(str(tmp_path / "plain"))
    assert step_summaries(plain, 2) == [None, None]
    # Steps past those asked for (a flow's sessions that went further) are left out.
    assert step_summaries(shards, 2) == [loaded[0], loaded[1]]


@pytest.mark.parametrize("n", [1, 2, 5, 1000, 10**6])
def test_a_curves_points_run_from_the_smallest_value_to_the_last_nine(n):
    q = curve_fractions(n)
    assert q[0] == 0.0 and (np.diff(q) > 0).all()
    assert q.max() == pytest.approx(1 - 1 / n) if n > 1 else q.tolist() == [0.0]
    assert len(q) == (400 if n >= 1000 else len(q)) and len(q) <= 401
    if n >= 1000:  # evenly spaced in nines: 1 - q shrinks by one factor a step
        ratios = (1 - q[2:]) / (1 - q[1:-1])
        assert np.allclose(ratios, ratios[0], rtol=1e-6)


def test_each_series_curve_is_its_ok_rows_nearest_rank_percentiles_in_ms(tmp_path):
    write_run(tmp_path / "run", np.random.default_rng(5), {"a": 2000, "b": 900})
    _, shards = locate(str(tmp_path / "run"))
    found = curves(shards, lambda shard: shard.target)
    rows = load(str(tmp_path / "run")).rows
    assert sorted(found) == ["a", "b"]  # each series its own
    named = curves(shards, lambda shard: f"run {shard.target}")  # a new string each time
    assert sorted(named) == ["run a", "run b"]
    assert all(np.array_equal(named["run a"][c][1], found["a"][c][1]) for c in found["a"])
    for target, curve in found.items():
        ok = rows[(rows["target"] == target) & rows["ok"]]
        for column in ("latency_ns", "service_ns"):
            q, values_ms = curve[column]
            assert np.array_equal(q, curve_fractions(len(ok)))
            # (write_run's made-up ok rows that were never sent count a service time of 0)
            values = ok[column].fillna(0).to_numpy(np.int64)
            exact = np.quantile(values, q, method="inverted_cdf") / MS
            assert np.array_equal(values_ms, exact), (target, column)


def test_an_endpoint_with_no_ok_request_has_availability_zero(tmp_path):
    # The highest endpoints of a shard failed every time: counted, at 0.
    run = tmp_path / "run"
    buffer = RowBuffer(worker=0, node="n")
    for i in range(12):
        endpoint = i % 4
        error = 0 if endpoint < 2 else CODES[1]
        buffer.add(i, endpoint, T0 + i * MS, T0 + i * MS, T0 + i * MS + 5, 200, error, 2)
    write_shard([buffer.close()], shard_dir(str(run), "t"), shard_name(0, 0))
    (run / "run.json").write_text(json.dumps({"run_id": "run", "status": "completed"}))
    _, shards = locate(str(run))
    found = endpoint_availability(shards, lambda shard: shard.target)
    assert found == {
        ("t", e): {"availability": a} for e, a in ((0, 1.0), (1, 1.0), (2, 0.0), (3, 0.0))
    }


def _rewrite(source: str, run, target: str, name: str, rows: slice, **options) -> None:
    """A copy of some of a shard's rows as another target's shard (``options``: how
    Parquet writes it)."""
    import pyarrow.parquet as pq

    folder = Path(shard_dir(str(run), target))
    folder.mkdir(parents=True, exist_ok=True)
    table = pq.read_table(source)[rows]
    pq.write_table(table, folder / name, **options)


def test_each_series_span_is_its_first_and_last_intended_time_with_or_without_statistics(
    tmp_path,
):
    run = tmp_path / "run"
    write_run(run, np.random.default_rng(11), {"a": 3000, "b": 700})
    _, shards = locate(str(run))
    first_of_a = next(shard.path for shard in shards if shard.target == "a")
    # A writer that keeps no statistics, and a shard of no rows: read from the column,
    # and left out.
    _rewrite(first_of_a, run, "d", shard_name(0, 0), slice(0, 10**9), write_statistics=False)
    _rewrite(first_of_a, run, "c", shard_name(0, 0), slice(0, 0))
    _, shards = locate(str(run))
    rows = load(str(run)).rows
    found = spans(shards, lambda shard: shard.target)
    assert list(found) == sorted(found) == ["a", "b", "d"]
    for target, (low, high) in found.items():
        intended = rows.loc[rows["target"] == target, "intended_ns"]
        assert (low, high) == (intended.min(), intended.max()), target
    assert found["d"] != found["a"]  # one shard of a's several
    streamed = timeline(shards, lambda shard: shard.target)
    pd.testing.assert_frame_equal(streamed, stats_timeline(rows))
    assert sorted(curves(shards, lambda shard: shard.target)) == ["a", "b", "d"]
    assert summaries([], lambda shard: shard.target) == {}


def _one_shard(run, workers: dict[int, tuple[int, int]], index: int = 0, late_ms: int = 30) -> None:
    """One shard of target t holding the rows of several generators: ``workers`` maps a
    generator to (requests on time, requests sent ``late_ms`` late); ``index``: the
    shard's."""
    batches = []
    for worker, (on_time, late) in workers.items():
        buffer = RowBuffer(worker=worker, node="n")
        for i in range(on_time + late):
            intended = T0 + i * MS
            sent = intended + (late_ms * MS if i < late else 0)
            buffer.add(i, 0, intended, sent, sent + MS, 200, 0, 2)
        batches.append(buffer.close())
    write_shard(batches, shard_dir(str(run), "t"), shard_name(0, index))
    (run / "run.json").write_text(json.dumps({"run_id": run.name, "status": "completed"}))


@pytest.mark.parametrize(
    ("workers", "saturated", "late_ms"),
    [
        ({0: (98, 2)}, True, 30),  # p99 of 100 is the 99th: late
        ({0: (99, 1)}, False, 30),  # the 100th only: on time
        ({0: (98, 2)}, False, 10),  # at the bound (10 ms) is within it
        # A collector's shard holds several generators: one of ten requests, all late,
        # beside two on time; judged alone it is saturated, lumped with them it is not.
        ({1: (500, 0), 0: (0, 10), 2: (500, 0)}, True, 30),
        ({1: (500, 0), 0: (10, 0), 2: (500, 0)}, False, 30),
    ],
)
def test_a_generator_is_saturated_at_its_own_p99_of_lag_by_the_nearest_rank(
    tmp_path, workers, saturated, late_ms
):
    _one_shard(tmp_path / "run", workers, late_ms=late_ms)
    _, shards = locate(str(tmp_path / "run"))
    found = summaries(shards, lambda shard: shard.target)
    assert found["t"]["saturated"] is saturated
    assert found == summary(load(str(tmp_path / "run")).rows)


@pytest.mark.parametrize(
    "run", ["three targets", "one late of 100", "two late of 100", "two late of 101"]
)
def test_counts_made_apart_and_added_give_the_summaries_of_counting_together(tmp_path, run):
    # What analyze --ray does with its partial results, without Ray: each half of the
    # shards counted on its own, the counts and histograms added, then one gathering.
    # The others: one generator's requests in two shards, its p99 of lag judged over
    # both (of 100, late with two late, not with one; of 101, the 100th: late with two).
    import pyarrow.parquet as pq

    from blastradius.analysis.scan import (
        COUNTED,
        GATHERED,
        count_batch,
        finish_summaries,
        gather_batch,
        labels_of,
        start_summaries,
    )

    if run == "three targets":
        write_run(tmp_path / "run", np.random.default_rng(12), {"a": 3000, "b": 700, "c": 1})
    else:
        late = 2 if run.startswith("two") else 1
        _one_shard(tmp_path / "run", {0: (50 - late, late)})
        _one_shard(tmp_path / "run", {0: (50 + run.endswith("101"), 0)}, index=1)
    _, shards = locate(str(tmp_path / "run"))
    labels = labels_of(shards, lambda shard: shard.target)
    codes = [labels.index(shard.target) for shard in shards]
    counts, selection = start_summaries(len(labels))
    for half in (slice(0, None, 2), slice(1, None, 2)):
        part, histograms = start_summaries(len(labels))
        for shard, g in zip(shards[half], codes[half], strict=True):
            table = pq.read_table(shard.path, columns=COUNTED)
            if half.start:  # a reader may hand the error kinds as plain strings
                error = table.schema.get_field_index("error")
                table = table.set_column(error, "error", table["error"].cast(pa.string()))
            for batch in table.to_batches():
                count_batch(part, histograms, g, batch)
        counts.add_counts(part)
        selection.add_counts(histograms.histograms)
    selection.plan()
    for shard, g in zip(shards, codes, strict=True):
        for batch in pq.read_table(shard.path, columns=GATHERED).to_batches():
            gather_batch(selection, g, batch)
    found = finish_summaries(labels, counts, selection)
    assert found == summary(load(str(tmp_path / "run")).rows)
    if run == "three targets":
        assert found["a"]["saturated"] and found["a"]["errors"]
    else:
        assert found["t"]["requests"] == int(run[-3:])
        assert found["t"]["saturated"] is (late == 2)


def test_a_runs_figures_from_files_are_each_targets_own_and_frozen(tmp_path):
    import dataclasses

    from blastradius.analysis.scan import FileFigures
    from blastradius.workers.run_record import Objectives

    write_run(tmp_path / "run", np.random.default_rng(13), {"a": 900, "b": 700})
    _, shards = locate(str(tmp_path / "run"))
    rows = load(str(tmp_path / "run")).rows
    figures = FileFigures(shards)
    assert figures.targets() == ["a", "b"]
    goals = Objectives((("availability", 0.9), ("p99", 400.0)), 5 * S)
    for target in ("a", "b"):
        mine = rows[rows["target"] == target]
        mine = mine.assign(target=mine["target"].cat.remove_unused_categories())
        windows = figures.windows(target, goals, None)
        assert windows["target"].unique().tolist() == [target]
        pd.testing.assert_frame_equal(
            windows, stats_timeline(mine, 5 * S, None, {"p99_ms": 0.99}, {})
        )
        assert figures.summary(target)["requests"] == len(mine)
    with pytest.raises(dataclasses.FrozenInstanceError):
        figures.shards = []


def test_a_session_targets_figures_from_files_hold_its_sessions(tmp_path):
    from blastradius.analysis.scan import FileFigures
    from blastradius.analysis.sessions import frame_figures
    from blastradius.analysis.slo import session_summary

    write_run(tmp_path / "run", np.random.default_rng(14), {"s": 800}, sessions=True)
    _, shards = locate(str(tmp_path / "run"))
    rows = load(str(tmp_path / "run")).rows
    found = FileFigures(shards).summary("s")
    expected = session_summary(frame_figures(rows))
    assert expected and {k: found[k] for k in expected} == expected
