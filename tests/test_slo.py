"""Objectives (``slo:``): parsed and merged, judged exactly (recomputed with plain pandas
from a real run's rows), per window, as JUnit XML, and the exit codes of ``run`` and
``check``."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from cli_runs import running
from reference_runs import quarter_timing_out

from blastradius.analysis.load import to_frame
from blastradius.analysis.slo import Objectives, Verdict, check, evaluate, junit_xml
from blastradius.cluster.scenario import parse_scenario
from blastradius.cluster.slo_keys import parse_objectives, parse_objectives_file
from blastradius.workers.outcome import TIMEOUT
from blastradius.workers.record import RowBuffer

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]
S, MS = 1_000_000_000, 1_000_000
T0 = 1_790_000_000_000_000_000


def objectives(**thresholds) -> Objectives:
    window = thresholds.pop("window_ns", None)
    return Objectives(tuple(thresholds.items()), window)


SUMMARY = {
    "requests": 1000,
    "ok": 990,
    "availability": 0.99,
    "throughput_rps": 100.0,
    "goodput_rps": 99.0,
    "p50_ms": 10.0,
    "p90_ms": 20.0,
    "p99_ms": 300.0,
    "p999_ms": 900.0,
    "p9999_ms": 990.0,
    "max_ms": 999.0,
    "service_p99_ms": 50.0,
    "errors": {"timeout": 10},
}


@pytest.mark.parametrize(
    ("name", "threshold", "met", "margin"),
    [
        ("availability", 0.99, True, 0.0),  # at least: equal meets it
        ("availability", 0.995, False, -0.005),
        ("goodput_rps", 99.0, True, 0.0),
        ("goodput_rps", 100.0, False, -1.0),
        ("p99", 300.0, True, 0.0),  # at most: equal meets it
        ("p99", 299.9, False, -0.1),
        ("p50", 11.0, True, 1.0),
        ("p90", 19.0, False, -1.0),
        ("p999", 1000.0, True, 100.0),
        ("p9999", 989.0, False, -1.0),
        ("max", 999.0, True, 0.0),
        ("service_p99", 49.0, False, -1.0),
        ("errors.timeout", 0.01, True, 0.0),
        ("errors.timeout", 0.009, False, -0.001),
        ("errors.reset", 0.0, True, 0.0),  # none of that kind: a share of 0
    ],
)
def test_each_objective_is_a_floor_or_a_ceiling_on_its_figure(name, threshold, met, margin):
    (verdict,) = evaluate("t", objectives(**{name: threshold}), SUMMARY)
    assert verdict.met is met
    assert verdict.margin == pytest.approx(margin, abs=1e-9)


def test_a_figure_that_cannot_be_measured_does_not_meet_its_objective():
    nothing_ok = {**SUMMARY, "ok": 0, "availability": 0.0, "p99_ms": None, "goodput_rps": 0.0}
    verdicts = evaluate("t", objectives(p99=1e9, goodput_rps=0.0), nothing_ok)
    assert [(v.met, v.measured, v.margin) for v in verdicts] == [
        (False, None, None),
        (True, 0.0, 0.0),
    ]


def rows_in_windows(per_window: list[tuple[int, int, float]]) -> pd.DataFrame:
    """Rows a second apart per window: (requests, failures, latency of the ok ones, ms)."""
    frame = to_frame(batch_in_windows(per_window))
    return frame.assign(target=pd.Categorical(["t"] * len(frame)), run="r")


def batch_in_windows(per_window: list[tuple[int, int, float]]) -> pa.RecordBatch:
    """``rows_in_windows``' rows as a generator hands them over."""
    buffer = RowBuffer(worker=0, node="n")
    seq = 0
    for window, (requests, failures, latency_ms) in enumerate(per_window):
        for i in range(requests):
            intended = T0 + window * S + i * (S // requests)
            failed = i < failures
            done = intended + (S if failed else int(latency_ms * MS))
            buffer.add(seq, 0, intended, intended, done, 0 if failed else 200, TIMEOUT * failed, 2)
            seq += 1
    return buffer.close()


def test_windowed_objectives_name_the_windows_that_breached():
    rows = rows_in_windows([(100, 0, 10.0), (100, 5, 10.0), (100, 0, 80.0), (100, 0, 10.0)])
    goal = objectives(availability=0.98, p99=50.0, window_ns=S)
    verdicts = {v.objective: v for v in check(rows, {"t": goal})}
    # Over the whole run, 395 of 400 are ok (0.9875); the p99 of the ok is 80 ms.
    assert verdicts["availability"].met and verdicts["availability"].measured == 395 / 400
    assert not verdicts["p99"].met
    per = verdicts["availability per 1s"]
    assert (per.met, per.measured, per.breaches) == (False, 0.95, (1.0,))
    p99 = verdicts["p99 per 1s"]
    assert (p99.met, p99.measured, p99.breaches) == (False, 80.0, (2.0,))
    good = check(rows, {"t": objectives(availability=0.9, p99=100.0, window_ns=S)})
    assert all(v.met for v in good)
    assert per.window_s == p99.window_s == 1.0
    half = check(rows, {"t": objectives(availability=0.98, window_ns=S // 2)})
    assert {v.window_s for v in half if v.breaches} == {0.5}


def test_a_window_without_an_ok_request_is_judged_by_its_availability_alone():
    rows = rows_in_windows([(10, 0, 10.0), (10, 10, 10.0)])
    verdicts = {v.objective: v for v in check(rows, {"t": objectives(p99=50.0, window_ns=S)})}
    assert verdicts["p99 per 1s"].met and verdicts["p99 per 1s"].breaches == ()


def test_a_target_without_rows_meets_nothing():
    rows = rows_in_windows([(10, 0, 10.0)])
    (verdict,) = check(rows, {"other": objectives(availability=0.0)})
    assert (verdict.target, verdict.met, verdict.measured) == ("other", False, None)


def test_a_target_without_rows_meets_no_error_share_and_the_next_is_still_judged():
    rows = rows_in_windows([(10, 0, 10.0)])
    goal = objectives(**{"errors.timeout": 0.5})
    verdicts = check(rows, {"other": goal, "t": goal})
    assert [(v.target, v.met, v.measured) for v in verdicts] == [
        ("other", False, None),
        ("t", True, 0.0),
    ]


def test_a_targets_slo_is_over_the_scenarios_key_by_key():
    document = {
        "name": "x",
        "load": {"rate": 10, "duration": "1s"},
        "slo": {"availability": 0.99, "p99": "300ms", "errors": {"timeout": 0.01}, "window": "5s"},
        "targets": [
            {"name": "a", "url": "http://127.0.0.1:9/", "slo": {"p99": "1s", "abort": True}},
            {"name": "b", "url": "http://127.0.0.1:9/", "slo": {"errors": {"reset": 0}}},
            {"name": "c", "url": "http://127.0.0.1:9/", "slo": {"window": "1s"}},
            {"name": "d", "url": "http://127.0.0.1:9/"},
        ],
    }
    found = parse_scenario(document).objectives()
    assert dict(found["a"].thresholds) == {
        "availability": 0.99,
        "p99": 1000.0,
        "errors.timeout": 0.01,
    }
    assert (found["a"].window_ns, found["a"].abort) == (5 * S, True)
    # errors is one key: the target's replace the scenario's.
    assert dict(found["b"].thresholds) == {"availability": 0.99, "p99": 300.0, "errors.reset": 0}
    assert found["c"].window_ns == S and found["d"] == parse_scenario(document).slo
    assert Objectives.from_json(found["a"].to_json()) == found["a"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"availability": 1.5}, "slo.availability: a share, from 0 to 1"),
        ({"availability": "high"}, "slo.availability: expected a number"),
        ({"p99": "fast"}, "slo.p99: unknown unit"),
        ({"p99": 0}, "slo.p99: must be positive"),
        ({"goodput_rps": -1}, "slo.goodput_rps: must be >= 0"),
        ({"errors": {"slow": 0.1}}, "slo.errors.slow: not an error kind"),
        ({"errors": {"timeout": 2}}, "slo.errors.timeout: a share, from 0 to 1"),
        ({"errors": [0.1]}, "slo.errors: expected a mapping"),
        ({"window": "10s"}, "slo: no objective"),
        ({"p99": "1s", "window": "-1s"}, "slo.window:"),
        ({"p99": "1s", "abort": "yes"}, "slo.abort: expected true or false"),
        ({"p98": "1s"}, "slo.p98: unknown key"),
        ([], "slo: expected a mapping"),
    ],
)
def test_bad_objectives_name_the_key(value, message):
    with pytest.raises(ValueError, match="^" + message.split(":")[0]) as info:
        parse_objectives(value, "slo")
    assert message in str(info.value)


def test_an_objectives_file_names_its_targets_and_needs_one_objective():
    base, own = parse_objectives_file({"p99": "1s", "targets": {"a": {"window": "1s"}}})
    assert dict(base.thresholds) == {"p99": 1000.0} and own["a"].window_ns == S
    with pytest.raises(ValueError, match=r"^no objectives \("):
        parse_objectives_file({})
    with pytest.raises(ValueError, match=r"^targets\.a: no objective"):
        parse_objectives_file({"targets": {"a": {"window": "1s"}}})


def test_junit_xml_has_a_case_per_target_and_objective_and_a_failure_per_miss():
    verdicts = [
        Verdict("async", "p99", 300.0, 120.0, True),
        Verdict("sync", "p99", 300.0, 1001.0, False),
        Verdict("sync", "availability per 10s", 0.999, 0.5, False, (10.0, 20.0)),
    ]
    suites = ET.fromstring(junit_xml({"run-1": verdicts}))
    assert (suites.get("tests"), suites.get("failures")) == ("3", "2")
    cases = suites.findall("./testsuite/testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("run-1.async", "p99 <= 300.0ms"),
        ("run-1.sync", "p99 <= 300.0ms"),
        ("run-1.sync", "availability per 10s >= 0.9990"),
    ]
    assert cases[0].find("failure") is None
    assert cases[1].find("failure").get("message") == "measured 1001.0ms"
    assert "10s, 20s" in cases[2].find("failure").get("message")


SLO = {
    "availability": 0.7,
    "goodput_rps": 50,
    "p50": "50ms",
    "p90": "100ms",
    "p99": "200ms",
    "p999": "300ms",
    "p9999": "400ms",
    "max": "500ms",
    "service_p99": "300ms",
    "errors": {"timeout": 0.3, "connect": 0},
    "window": "500ms",
}


SLO_MS = {"p50": 50, "p90": 100, "p99": 200, "p999": 300, "p9999": 400, "max": 500}
SLO_MS["service_p99"] = 300


def test_check_on_a_real_runs_rows_equals_plain_pandas(tmp_path):
    # One endpoint of four never answers within the deadline: a quarter time out.
    run_dir = quarter_timing_out(tmp_path / "real-run")
    (tmp_path / "slo.yaml").write_text(yaml.safe_dump(SLO))
    junit = tmp_path / "junit.xml"
    slo = str(tmp_path / "slo.yaml")
    result = subprocess.run(
        [*BLASTRADIUS, "check", str(run_dir), "--slo", slo, "--json", "--junit", str(junit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode in (0, 3) and result.stdout, result.stderr
    reported = json.loads(result.stdout)
    judged = {v["objective"]: v for v in reported["runs"]["real-run"]["objectives"]}

    plain = pd.read_parquet(run_dir / "requests")
    ok = plain[plain["ok"]]
    latency = ok["latency_ns"].to_numpy() / MS

    def q(values, fraction):
        return float(np.quantile(values, fraction, method="inverted_cdf"))

    intended = plain["intended_ns"]
    throughput = (len(plain) - 1) / ((intended.max() - intended.min()) / S)
    expected = {
        "availability": len(ok) / len(plain),
        "goodput_rps": throughput * len(ok) / len(plain),
        "p50": q(latency, 0.5),
        "p90": q(latency, 0.9),
        "p99": q(latency, 0.99),
        "p999": q(latency, 0.999),
        "p9999": q(latency, 0.9999),
        "max": latency.max(),
        "service_p99": q(ok["service_ns"].to_numpy() / MS, 0.99),
        "errors.timeout": (plain["error"] == "timeout").mean(),
        "errors.connect": (plain["error"] == "connect").mean(),
    }
    assert expected["availability"] == 0.75
    for name, value in expected.items():
        assert judged[name]["measured"] == pytest.approx(value, rel=1e-12), name
    # Per 500 ms window of intended time, from the first request.
    window = (intended - intended.min()) // (S // 2)
    per_window = plain.assign(window=window).groupby("window")
    availability = per_window["ok"].mean()
    assert judged["availability per 0.5s"]["measured"] == availability.min()
    ok_windows = ok.assign(window=window[plain["ok"]]).groupby("window")
    for name, column, fraction in [
        ("p50", "latency_ns", 0.5),
        ("p90", "latency_ns", 0.9),
        ("p99", "latency_ns", 0.99),
        ("p999", "latency_ns", 0.999),
        ("p9999", "latency_ns", 0.9999),
        ("max", "latency_ns", 1.0),
        ("service_p99", "service_ns", 0.99),
    ]:
        figures = ok_windows[column].apply(lambda v, f=fraction: q(v.to_numpy() / MS, f))
        verdict = judged[f"{name} per 0.5s"]
        assert verdict["measured"] == pytest.approx(figures.max(), rel=1e-12), name
        ceiling = SLO_MS[name]
        assert verdict["breaches_s"] == sorted(w * 0.5 for w, v in figures.items() if v > ceiling)

    met = all(v["met"] for v in judged.values())
    assert reported["met"] is met
    assert result.returncode == (0 if met else 3), result.stderr
    suites = ET.parse(junit).getroot()
    assert int(suites.get("tests")) == len(judged)
    assert int(suites.get("failures")) == sum(not v["met"] for v in judged.values())


def test_a_run_stops_its_load_once_an_objective_cannot_be_met_and_exits_3(tmp_path):
    scenario = {
        "name": "slo",
        "load": {"rate": 50, "duration": "30s", "timeout": "1s"},
        "generators": 1,
        "dependency": {"latency": "5*2", "errors": "1*2"},  # every call fails: 1500 failures
        "slo": {"availability": 0.99, "p99": "1s", "abort": True},  # a budget of 15
        "targets": [{"name": "async", "kind": "async"}],
    }
    with running(tmp_path, scenario) as run:
        stdout, stderr, run_path = run.end(300)
    assert run.process.returncode == 3, stderr
    run_dir = str(run_path)
    manifest = json.loads(Path(run_dir, "run.json").read_text())
    assert manifest["status"] == "completed"  # the run itself completed; its rows are intact
    assert manifest["objectives"] == {"async": {"availability": 0.99, "p99": 1000.0, "abort": True}}
    block = manifest["targets"]["async"]
    assert "availability >= 0.99 can no longer be met" in block["aborted"]["reason"]
    assert "of 1500 planned requests failed already" in block["aborted"]["reason"]
    assert [g["state"] for g in block["generators"]] == ["stopped"]
    rows = pd.read_parquet(f"{run_dir}/requests")
    assert 15 < len(rows) < 1500 and not rows["ok"].any()
    lines = [line.split() for line in stdout.splitlines() if line.startswith("async ")]
    assert lines[-2][:4] == ["async", "availability", ">=", "0.9900"]
    assert lines[-2][-2:] == ["NOT", "MET"] and lines[-1][-2:] == ["NOT", "MET"]

    own = subprocess.run([*BLASTRADIUS, "check", run_dir], capture_output=True, text=True)
    assert own.returncode == 3, own.stderr
    lenient = tmp_path / "lenient.yaml"
    lenient.write_text("targets: {async: {errors: {http: 1}}}\navailability: 0\n")
    again = subprocess.run(
        [*BLASTRADIUS, "check", run_dir, "--slo", str(lenient)], capture_output=True, text=True
    )
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.parametrize(
    ("slo_text", "message"),
    [
        (None, "no objectives (its scenario has no slo:; give --slo FILE)"),
        ("p99: soon\n", "--slo {path}: p99: unknown unit"),
        ("targets: {nope: {p99: 1s}}\n", "--slo {path}: targets.nope: run has no such target"),
        ("[1, 2]\n", "--slo {path}: expected a mapping of objectives, got list"),
        ("p99: [\n", "--slo {path}: not valid YAML"),
    ],
)
def test_check_with_bad_objectives_is_exit_2_with_one_line(tmp_path, slo_text, message):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"run_id": "run", "status": "completed"}))
    args = [*BLASTRADIUS, "check", str(run_dir)]
    path = tmp_path / "slo.yaml"
    if slo_text is not None:
        path.write_text(slo_text)
        args += ["--slo", str(path)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert message.format(path=path) in result.stderr


@pytest.mark.parametrize(
    ("thresholds", "window_s", "planned", "seen", "stops"),
    [
        # A budget of 1% of 1000: the 11th failure spends it, the 10th does not.
        ({"availability": 0.99}, None, 1000, [(1, 100, 90, {})], None),
        ({"availability": 0.99}, None, 1000, [(1, 100, 89, {})], "availability >= 0.99 can"),
        ({"errors.timeout": 0.05}, None, 1000, [(1, 200, 150, {"timeout": 50})], None),
        (
            {"errors.timeout": 0.05},
            None,
            1000,
            [(1, 200, 149, {"timeout": 51})],
            "errors.timeout <= 0.05 can",
        ),
        # No count known (a closed loop): no budget.
        ({"availability": 0.99}, None, None, [(1, 100, 0, {})], None),
        # Per 2 s window: the last two seconds at 0.5, but only once two seconds passed.
        ({"availability": 0.9}, 2, None, [(1, 40, 20, {})], None),
        ({"availability": 0.9}, 2, None, [(1, 40, 20, {}), (2, 80, 40, {})], "per 2s"),
        # ... and over a window after good ones: from 2 s to 4 s, 25 of 40 ok.
        (
            {"availability": 0.9},
            2,
            None,
            [(1, 50, 50, {}), (2, 100, 100, {}), (3, 110, 105, {}), (4, 140, 125, {})],
            "0.6250 over the last 2s",
        ),
        # Too few requests in the window to judge.
        ({"availability": 0.9}, 2, None, [(1, 5, 0, {}), (2, 10, 0, {})], None),
        # Latency is never a reason to stop.
        ({"p99": 1.0}, 2, 1000, [(1, 100, 0, {}), (2, 200, 0, {})], None),
        # Errors of a kind below their budget, however many: no reason.
        ({"errors.timeout": 0.05}, None, 1000, [(1, 200, 180, {"timeout": 20})], None),
        # The first window is whole exactly a window after the load started, and
        # counts from nothing.
        ({"availability": 0.9}, 2, None, [(2, 40, 20, {})], "0.5000 over the last 2s"),
        # A budget spent exactly is not overspent (0.5 of 100: 50 may fail).
        ({"availability": 0.5}, None, 100, [(1, 100, 50, {})], None),
        ({"availability": 0.5}, None, 100, [(1, 100, 49, {})], "51 of 100 planned"),
        # No errors of a kind allowed, and none seen: no reason.
        ({"errors.timeout": 0.0}, None, 100, [(1, 10, 9, {"http": 1})], None),
        # Counts seen at uneven times: a window is judged once it is whole, even when
        # the oldest count kept is older than a window.
        ({"availability": 0.9}, 1, None, [(1.1, 40, 40, {}), (2.3, 80, 50, {})], "per 1s"),
    ],
)
def test_when_the_load_stops_early(thresholds, window_s, planned, seen, stops):
    from blastradius.cluster.abort import Guard

    window_ns = None if window_s is None else window_s * S
    guard = Guard(Objectives(tuple(thresholds.items()), window_ns, True), planned)
    reasons = [guard.observe(t, rows, ok, errors) for t, rows, ok, errors in seen]
    assert all(r is None for r in reasons[:-1])
    if stops is None:
        assert reasons[-1] is None
    else:
        assert stops in reasons[-1]


def test_the_reason_to_stop_counts_what_failed_of_what_was_planned():
    from blastradius.cluster.abort import Guard

    guard = Guard(objectives(availability=0.99), 1000)
    assert guard.observe(1, 100, 89, {}) == (
        "availability >= 0.99 can no longer be met: 11 of 1000 planned requests failed already"
    )
    guard = Guard(objectives(**{"errors.timeout": 0.05}), 1000)
    assert guard.observe(1, 200, 149, {"timeout": 51}) == (
        "errors.timeout <= 0.05 can no longer be met: 51 of 1000 planned requests ended in "
        "timeout already"
    )


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("availability", 0.99, "0.9900"),
        ("availability per 1s", 0.5, "0.5000"),
        ("goodput_rps", 99.0, "99.0/s"),
        ("errors.timeout", 0.0125, "1.250%"),
        ("p99", 312.44, "312.4ms"),
        ("p99", 1.0, "1.0ms"),
        ("p99", 0.25, "0.25ms"),
        ("max per 1s", 0.0004, "0.0004ms"),
        ("p99", None, "-"),
    ],
)
def test_each_figure_is_written_in_its_unit(name, value, text):
    from blastradius.analysis.slo import format_value

    assert format_value(name, value) == text


def test_the_verdict_table_signs_a_missed_margin_and_names_the_first_window_that_broke():
    from blastradius.analysis.slo import verdict_table

    missed = Verdict("t", "p99 per 1s", 50.0, 80.0, False, (2.0, 5.0), 1.0)
    kept = Verdict("t", "availability", 0.9, 0.95, True)
    header, miss, keep = verdict_table([missed, kept])
    assert header.split() == ["target", "objective", "measured", "margin", "result"]
    words = miss.split()
    assert words[words.index("80.0ms") + 1] == "-30.0ms"
    assert miss.endswith("NOT MET (in 2 windows, first at 2s)")
    assert keep.split()[-3:] == ["0.9500", "0.0500", "met"]


def test_objectives_for_targets_a_run_lacks_name_the_first_of_them(tmp_path):
    from blastradius.analysis.load import load
    from blastradius.analysis.slo import judge

    runs = load(str(quarter_timing_out(tmp_path / "run-1")))
    given = (None, {"zeta": objectives(p99=1.0), "alpha": objectives(p99=1.0)})
    with pytest.raises(ValueError, match=r"^targets\.alpha: run-1 has no such target$"):
        judge(runs, given)


@pytest.mark.parametrize(
    ("window_ns", "seen", "stops"),
    [
        # A window is judged from MIN_WINDOW_ROWS requests ended in it, not one fewer.
        (2 * S, [(2, 20, 0, {})], "0.0000 over the last 2s"),
        (2 * S, [(2, 19, 0, {})], None),
        # Availability exactly at the floor keeps it.
        (2 * S, [(2, 40, 36, {})], None),
        (2 * S, [(2, 40, 35, {})], "0.8750 over the last 2s"),
        # A window of 1.5 s is whole at 1.5 s, not at 1 s.
        (1_500_000_000, [(1.0, 40, 20, {})], None),
        (1_500_000_000, [(1.0, 40, 20, {}), (1.5, 60, 30, {})], "per 1.5s"),
        # Counts at uneven times: the window is the last second, from the count 0.6 s in.
        (S, [(0.6, 30, 30, {}), (1.7, 60, 40, {})], "0.3333 over the last 1s"),
    ],
)
def test_a_window_is_judged_whole_and_from_enough_requests(window_ns, seen, stops):
    from blastradius.cluster.abort import MIN_WINDOW_ROWS, Guard

    assert MIN_WINDOW_ROWS == 20
    guard = Guard(objectives(availability=0.9, window_ns=window_ns), None)
    reasons = [guard.observe(t, rows, ok, errors) for t, rows, ok, errors in seen]
    assert all(r is None for r in reasons[:-1])
    assert reasons[-1] is None if stops is None else stops in reasons[-1]


def test_the_verdict_table_lays_out_its_columns_and_signs_only_a_miss():
    from blastradius.analysis.slo import verdict_table

    lines = verdict_table(
        [
            Verdict("sync", "availability", 0.999, 0.95, False),  # short by 0.049
            Verdict("async", "availability", 0.9, 0.9, True),  # met exactly: no sign
            Verdict("async", "p99", 300.0, 299.5, True),  # room under 1: no sign
            Verdict("async", "max", 300.0, 300.5, False),  # missed by under 1: signed
        ]
    )
    assert lines == [
        "target      objective                             measured      margin  result",
        "sync        availability >= 0.9990                  0.9500     -0.0490  NOT MET",
        "async       availability >= 0.9000                  0.9000      0.0000  met",
        "async       p99 <= 300.0ms                         299.5ms       0.5ms  met",
        "async       max <= 300.0ms                         300.5ms      -0.5ms  NOT MET",
    ]


def test_junit_xml_is_a_declared_document():
    assert junit_xml({"run-1": [Verdict("t", "p99", 1.0, 0.5, True)]}).startswith(
        "<?xml version='1.0' encoding='utf-8'?>\n<testsuites"
    )


def test_windowed_objectives_without_window_figures_are_judged_over_the_run():
    # evaluate() without windows judges the whole run; windows without a window are
    # not read.
    goal = objectives(availability=0.9, window_ns=S)
    (verdict,) = evaluate("t", goal, SUMMARY)
    assert (verdict.objective, verdict.met, verdict.breaches) == ("availability", True, ())
    windows = pd.DataFrame({"target": ["t"], "t_s": [0.0], "availability": [0.1]})
    (verdict,) = evaluate("t", objectives(availability=0.9), SUMMARY, windows)
    assert (verdict.objective, verdict.met) == ("availability", True)


def test_a_windowed_service_time_objective_is_its_p99_per_window_not_its_max():
    # One window of 200 requests: 198 served in 10 ms, 2 in 500 ms: p99 10 ms, max 500.
    frame = pd.concat([rows_in_windows([(198, 0, 10.0)]), rows_in_windows([(2, 0, 500.0)])])
    (_, windowed) = check(frame, {"t": objectives(service_p99=100.0, window_ns=S)})
    assert windowed.objective == "service_p99 per 1s" and windowed.met
    assert windowed.measured == pytest.approx(10.0)


def test_junit_suites_count_their_own_failures():
    verdicts = [
        Verdict("t", "p99", 300.0, 120.0, True),
        Verdict("t", "p50", 300.0, 20.0, True),
        Verdict("t", "max", 1.0, 2.0, False),
    ]
    (suite,) = ET.fromstring(junit_xml({"run-1": verdicts})).findall("testsuite")
    assert (suite.get("tests"), suite.get("failures")) == ("3", "1")


def test_a_runs_objectives_judged_from_its_rows_or_its_files_agree(tmp_path):
    from blastradius.analysis.load import load
    from blastradius.analysis.scan import FileFigures, open_runs
    from blastradius.analysis.slo import judge, met
    from blastradius.workers.layout import shard_dir, shard_name
    from blastradius.workers.shards import write_shard

    goal = {"availability": 0.9, "p99": 5.0, "window_ns": S}
    for name, latency_ms in (("one", 1.0), ("two", 20.0)):
        batch = batch_in_windows([(50, 2, latency_ms), (50, 1, latency_ms)])
        run = tmp_path / "runs" / name
        write_shard([batch], shard_dir(str(run), "t"), shard_name(0, 0))
        manifest = {"run_id": name, "status": "completed", "objectives": {"t": goal}}
        (run / "run.json").write_text(json.dumps(manifest))
    from_rows = judge(load(str(tmp_path / "runs")))
    runs, shards = open_runs([str(tmp_path / "runs")])
    from_files = judge(runs, figures=lambda run: FileFigures([s for s in shards if s.run == run]))
    assert from_rows == from_files and set(from_rows) == {"one", "two"}
    assert met(from_rows["one"]) != met(from_rows["two"])
