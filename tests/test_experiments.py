"""The blast-radius experiments end to end through the CLI, and the demo's arithmetic.

The end-to-end cases are the quick scenarios, shortened: the blast radius itself
(the blocking service's healthy endpoints fail too, the async service keeps its
healthy endpoints), the 200 ms control, and a fault landing at the same moment of
every target's load.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from blastradius import analysis
from blastradius.cluster.demo import (
    QUICK,
    capacity,
    comparison,
    comparison_table,
    concurrency_needed,
    explain,
    scenario_name,
    slow_endpoints,
)
from blastradius.cluster.scenario import load_scenario
from blastradius.cluster.shipped import shipped
from blastradius.workers.journey import Journey, Step, compile_text

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]  # the CLI, as installed

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").rglob("*.yaml"))
S = 1_000_000_000


def run_cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*BLASTRADIUS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def availability(rows: pd.DataFrame) -> float:
    return float(rows["ok"].mean())


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_is_valid(path):
    scenario = load_scenario(path)
    assert scenario.name == yaml.safe_load(path.read_text())["name"]


@pytest.mark.parametrize(
    ("path", "needed"),
    [
        # rate x mean time a request holds a thread: (9 x 0.2 + 30) / 10 = 3.18 s.
        ("quick/30s.yaml", {"blocking": 318, "async": 318}),
        ("essay/30s.yaml", {"blocking": 3180, "async": 3180}),
        ("essay/200ms.yaml", {"blocking": 200, "async": 200}),
        ("essay/600ms.yaml", {"blocking": 600, "async": 600}),
        ("quick/600ms.yaml", {"blocking": 60, "async": 60}),
        # 20 sessions/s of 5 calls are 100 calls/s: the same as quick/30s.
        ("quick/30s-sessions.yaml", {"blocking": 318, "async": 318}),
        ("essay/30s-sessions.yaml", {"blocking": 3180, "async": 3180}),
        # HTTP/2 to the dependency changes nothing of it: the same calls, held as long.
        ("quick/30s-http2.yaml", {"http1-pool-100": 318, "http2-1-conn": 318}),
        # A 1 s dependency timeout caps endpoint 9: (9 x 0.2 + 1) / 10 = 0.28 s.
        ("quick/30s-dependency-timeout.yaml", {"blocking-timeout": 28}),
        # 200 ms everywhere until endpoint 9 turns 30 s: the worst phase counts.
        ("quick/slow-at-10s.yaml", {"blocking": 318, "async": 318}),
    ],
)
def test_littles_law_concurrency_needed(path, needed):
    scenario = load_scenario(ROOT / "scenarios" / path)
    got = {t.name: concurrency_needed(scenario, t) for t in scenario.targets}
    assert got == pytest.approx(needed)


def test_quick_cases_keep_the_essays_ratio_of_threads_to_load():
    for case in ("200ms", "600ms", "30s"):
        quick = load_scenario(ROOT / "scenarios" / "quick" / f"{case}.yaml")
        essay = load_scenario(ROOT / "scenarios" / "essay" / f"{case}.yaml")
        for scenario in (quick, essay):
            rate = scenario.load.shape.stages[0].start_rps
            blocking = next(t for t in scenario.targets if t.kind == "blocking")
            assert blocking.threads / (rate * 0.2) == pytest.approx(2.5)
        assert quick.dependency.config.latencies == essay.dependency.config.latencies


def test_the_demos_scenarios_are_shipped():
    assert scenario_name() == QUICK == "quick/30s"
    assert scenario_name(full=True) == "essay/30s"
    assert scenario_name(sessions=True) == "quick/30s-sessions"
    assert scenario_name(full=True, sessions=True) == "essay/30s-sessions"
    for full in (False, True):
        single = load_scenario(shipped(scenario_name(full=full)))
        sessions = load_scenario(shipped(scenario_name(full=full, sessions=True)))
        assert {t.session_calls for t in sessions.targets} == {5}
        assert sessions.dependency == single.dependency
        assert [t.threads for t in sessions.targets] == [t.threads for t in single.targets]


def test_capacity_and_slow_endpoints():
    scenario = load_scenario(shipped(QUICK))
    assert [capacity(t) for t in scenario.targets] == ["50 threads", "no limit"]
    assert slow_endpoints(scenario) == (9,)
    pool = load_scenario(ROOT / "scenarios" / "quick" / "30s-async-pool.yaml")
    assert capacity(pool.targets[0]) == "10 conns"
    http2 = load_scenario(ROOT / "scenarios" / "quick" / "30s-http2.yaml")
    assert [capacity(t) for t in http2.targets] == [
        "100 conns",
        "1 conns x 100 streams = 100",
    ]
    fault = load_scenario(ROOT / "scenarios" / "quick" / "slow-at-10s.yaml")
    assert slow_endpoints(fault) == (9,)
    fast = load_scenario(ROOT / "scenarios" / "quick" / "200ms.yaml")
    assert slow_endpoints(fast) == ()


# The demo itself runs from the installed wheel: tests/test_install.py.


def test_with_200ms_everywhere_both_services_serve_everything(tmp_path):
    scenario = ROOT / "scenarios" / "quick" / "200ms.yaml"
    result = run_cli("run", str(scenario), "--out", str(tmp_path), "--set", "load.duration=4s")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_parquet(Path(result.stdout.strip().splitlines()[-1]) / "requests")
    for target in ("blocking", "async"):
        mine = rows[rows["target"] == target]
        assert len(mine) == 400
        assert availability(mine) >= 0.99, target


def test_a_fault_lands_at_the_same_moment_of_every_targets_load(tmp_path):
    """Fault times count from each target's load start, so every target sees the change."""
    scenario = {
        "name": "fault-anchor",
        "load": {"rate": 50, "duration": "6s", "timeout": "1s"},
        "generators": 1,
        "dependency": {
            "latency": "20*10",
            "faults": [{"at": "3s", "endpoint": 9, "latency": "30s"}],
        },
        "targets": [{"name": "first", "kind": "async"}, {"name": "second", "kind": "async"}],
    }
    path = tmp_path / "fault.yaml"
    path.write_text(yaml.safe_dump(scenario))
    result = run_cli("run", str(path), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    run_dir = Path(lines[-1])
    # The first target's service is stopped before the second target's load begins.
    stopped = lines.index("first: load over; service stopped")
    assert not any(line.startswith("second:") for line in lines[:stopped])
    assert any(line.startswith("second:") for line in lines[stopped:])
    manifest = json.loads((run_dir / "run.json").read_text())
    rows = pd.read_parquet(run_dir / "requests")
    for target in ("first", "second"):
        block = manifest["targets"][target]
        assert block["faults"] == [{"at_s": 3.0, "label": "endpoint 9: latency 30s"}]
        mine = rows[(rows["target"] == target) & (rows["endpoint"] == 9)]
        since_s = (mine["intended_ns"] - block["start_ns"]) / S
        assert mine[since_s < 2.5]["ok"].all(), target  # before the fault: fast
        assert not mine[since_s > 3.5]["ok"].any(), target  # after it: past the deadline
        others = rows[(rows["target"] == target) & (rows["endpoint"] != 9)]
        assert availability(others) >= 0.98, target


def test_sessions_through_the_async_service_fail_where_they_draw_the_slow_endpoint(tmp_path):
    """The essay one level up (scenarios/quick/30s-sessions.yaml, shortened, async only):
    each session's 5 calls go to endpoints drawn by its seeded order, a call to the slow
    endpoint times out and ends its session there, and only those sessions fail."""
    scenario = {
        "name": "sessions-blast",
        "load": {"rate": 20, "duration": "3s", "timeout": "1s", "seed": 3},
        "generators": 1,
        "dependency": {"latency": "20*9,30000"},
        "targets": [{"name": "async", "kind": "async", "session_calls": 5}],
    }
    path = tmp_path / "sessions.yaml"
    path.write_text(yaml.safe_dump(scenario))
    result = run_cli("run", str(path), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["targets"]["async"]["steps"] == [f"call/{i}" for i in range(10)]
    rows = pd.read_parquet(run_dir / "requests").sort_values(["session", "intended_ns", "seq"])
    assert sorted(rows["session"].unique()) == list(range(60))
    assert (rows["step"] == rows["endpoint"]).all()
    calls = tuple(Step(f"call/{i}", compile_text(f"http://h/call/{i}", (), {})) for i in range(10))
    journey = Journey(calls, draws=5)
    completed = 0
    for session, mine in rows.groupby("session"):
        drawn = journey.order(int(session), seed=3)
        assert tuple(mine["step"]) == drawn, session  # every call, sent or skipped, in order
        sent = drawn[: drawn.index(9) + 1] if 9 in drawn else drawn
        errors = list(mine["error"])
        assert errors == [""] * (len(sent) - 1) + (["timeout"] if 9 in drawn else [""]) + [
            "skipped"
        ] * (5 - len(sent)), session
        completed += 9 not in drawn
    # 1 - 0.9^5 = 41% of sessions draw endpoint 9 on average; these 60 are seeded.
    assert 0.4 < completed / 60 < 0.8
    analyzed = run_cli("analyze", str(run_dir), "--json")
    assert analyzed.returncode == 0, analyzed.stderr
    sessions = json.loads(analyzed.stdout)["targets"]["async"]["sessions"]
    assert (sessions["sessions"], sessions["completed"]) == (60, completed)
    # Sessions end where they call endpoint 9, and nowhere else.
    assert {stage["step"] for stage in sessions["funnel"] if stage["ended"]} == {9}
    assert sessions["funnel"][9]["ended"] == 60 - completed
    loaded, parsed = analysis.load(str(run_dir)).rows, load_scenario(path)
    (entry,) = comparison(parsed, loaded)
    assert entry["sessions"] == completed / 60
    assert entry["healthy"] == 1.0 and entry["slow"] == 0.0
    assert entry["errors"] == {
        "timeout": 60 - completed,
        "skipped": int(sum(rows["error"] == "skipped")),
    }
    header, line = comparison_table(parsed, loaded)
    assert header.split()[:5] == ["target", "avail", "healthy", "slow", "sessions"]
    availability = f"{entry['availability']:.3f}"
    assert line.split()[:5] == ["async", availability, "1.000", "0.000", f"{completed / 60:.3f}"]
    assert explain(parsed)[0].startswith("20 sessions/s of 5 calls over 10 dependency endpoints")
    single = loaded.drop(columns=["session", "step"])  # as rows of single requests are
    assert "sessions" not in comparison_table(parsed, single)[0]
