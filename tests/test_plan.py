"""The run plan, pure: what a scenario starts and sends, decided once."""

import json

import pytest
import yaml

from blastradius.cluster.plan import build_plan, generator_count
from blastradius.cluster.scenario import parse_scenario
from blastradius.targets.dependency import parse_config as parse_dependency_config

S = 1_000_000_000


def scenario(**top):
    document = {
        "name": "p",
        "load": {"rate": 100, "duration": "2s", "timeout": "1s"},
        "dependency": {
            "latency": "10*2,lognormal(200ms, p99=1s)",
            "errors": "0,0,0.5",
            "seed": 7,
            "faults": [{"at": "1s", "endpoint": 2, "latency": "3s"}],
        },
        "targets": [
            {"name": "sync", "kind": "blocking", "threads": 8, "dependency_timeout": "500ms"},
            {"name": "async", "kind": "async"},
        ],
    }
    document.update(top)
    return parse_scenario(yaml.safe_load(yaml.safe_dump(document)))


def test_a_launched_dependency_and_targets_become_serve_commands():
    plan = build_plan(scenario(), 3)
    assert plan.generators == 3 and plan.launches
    dependency = plan.dependency
    assert dependency.kind == "dependency"
    assert dependency.args == ("--config", "-")
    # The configuration travels on stdin as the document the scenario's block was, read
    # back by the same function: equal to what the scenario parsed, schedule and all.
    sent = json.loads(dependency.stdin)
    assert sent["errors"] == "0.0*2,0.5" and sent["seed"] == 7
    assert parse_dependency_config(sent) == plan.scenario.dependency.config
    assert plan.scenario.dependency.faults
    assert [m.label for m in plan.fault_marks] == ["endpoint 2: latency 3s"]
    sync, async_ = plan.steps
    assert sync.service.args == ("--threads", "8", "--dependency-timeout", "0.5s")
    assert async_.service.args == ("--max-connections", "0")
    assert [t.url for t in sync.templates("http://h:1")] == [
        f"http://h:1/call/{i}" for i in (0, 1, 2)
    ]


def test_targets_given_by_url_start_nothing_and_send_their_own_requests():
    plan = build_plan(
        scenario(dependency=None, targets=[{"name": "mine", "urls": ["http://a/x", "http://a/y"]}]),
        2,
    )
    assert not plan.launches and plan.dependency is None and plan.fault_marks == ()
    (step,) = plan.steps
    assert step.service is None
    assert [t.url for t in step.templates(None)] == ["http://a/x", "http://a/y"]


def test_a_running_dependency_is_passed_by_url_not_started():
    plan = build_plan(scenario(dependency={"url": "http://dep:9/", "endpoints": 4}), 1)
    assert plan.dependency is None and plan.dependency_url == "http://dep:9"
    assert len(plan.steps[0].templates("http://t:1")) == 4


def test_each_step_carries_its_targets_objectives_the_scenarios_under_its_own():
    plan = build_plan(
        scenario(
            slo={"availability": 0.99, "p99": "300ms"},
            targets=[
                {"name": "sync", "kind": "blocking", "slo": {"abort": True}},
                {"name": "async", "kind": "async"},
                {"name": "mine", "url": "http://a/x", "slo": {"window": "2s"}},
            ],
        ),
        1,
    )
    sync, async_, mine = plan.steps
    assert sync.objectives.abort and not async_.objectives.abort
    assert {s.objectives.get("availability") for s in plan.steps} == {0.99}
    assert mine.service is None and mine.objectives.window_ns == 2 * S
    assert build_plan(scenario(), 1).steps[0].objectives is None


def test_shares_interleave_one_schedule_and_the_end_is_the_last_deadline():
    plan = build_plan(scenario(), 2)
    step = plan.steps[1]
    plans = plan.shares(step, "http://t:1", start_ns=10 * S)
    assert [(p.worker, p.workers, p.start_ns) for p in plans] == [(0, 2, 10 * S), (1, 2, 10 * S)]
    assert {p.templates for p in plans} == {step.templates("http://t:1")}
    assert {p.journey for p in plans} == {None}
    # 200 requests at 100/s: the last is due at 1.99 s; its deadline 1 s after.
    assert plan.end_ns(10 * S, step) == 10 * S + int(1.99 * S) + 1 * S
    assert plan.planned_requests(step) == 200


def sessions(tmp_path, data: dict | None = None, **target):
    (tmp_path / "users.csv").write_text("user\n" + "".join(f"u{i}\n" for i in range(50)))
    user = "" if data is None else "?u=${row.user}"
    steps = [{"url": "http://t:1/a"}, {"url": f"http://t:1/b{user}"}]
    shop = {"name": "shop", "steps": steps, **target}
    if data is not None:
        shop["data"] = data
    document = {"name": "p", "load": {"rate": 100, "duration": "2s", "timeout": "1s"}}
    document["targets"] = [shop]
    plan = build_plan(parse_scenario(document, base=tmp_path), 2)
    return plan, plan.steps[0]


@pytest.mark.parametrize(
    ("pick", "sessions_planned"),
    [("unique", 50), ("cycle", 200), ("random", 200)],
)
def test_unique_test_data_ends_the_load_when_its_rows_run_out(tmp_path, pick, sessions_planned):
    plan, step = sessions(tmp_path, {"file": "users.csv", "pick": pick})
    # 200 arrivals, 2 steps each; only 50 users to log in once each.
    assert plan.planned_requests(step) == 2 * sessions_planned
    shares = plan.shares(step, None, start_ns=0)
    assert all(share.load.max_requests == (50 if pick == "unique" else None) for share in shares)
    assert {share.journey for share in shares} == {step.target.journey}


def test_a_launched_target_taking_sessions_draws_its_calls_from_its_endpoints():
    targets = [{"name": "async", "kind": "async", "session_calls": 5}]
    plan = build_plan(scenario(targets=targets), 2)
    (step,) = plan.steps
    journey = step.journey("http://h:1")
    assert [s.name for s in journey.steps] == ["call/0", "call/1", "call/2"]
    assert {s.prepared.origin for s in journey.steps} == {("http", "h", 1)}
    assert [s.prepared.data.split(b" ")[1] for s in journey.steps] == [
        f"/call/{i}".encode() for i in range(3)
    ]
    assert [s.url.written for s in journey.steps] == [f"http://h:1/call/{i}" for i in range(3)]
    assert journey.draws == 5 and journey.timeout_ns is None and journey.data is None
    shares = plan.shares(step, "http://h:1", start_ns=0)
    assert {share.journey for share in shares} == {journey}
    # 200 sessions of 5 calls; no session timeout, so no end is known ahead.
    assert plan.planned_requests(step) == 1000
    assert plan.end_ns(10 * S, step) is None
    assert step.sessions and not build_plan(scenario(), 1).steps[1].sessions
    assert build_plan(scenario(), 1).steps[1].journey("http://h:1") is None


def test_a_session_targets_planned_end_waits_for_its_last_session(tmp_path):
    plan, step = sessions(tmp_path)
    assert plan.end_ns(10 * S, step) is None  # no session timeout: no end known
    plan, step = sessions(tmp_path, session_timeout="5s")
    assert plan.end_ns(10 * S, step) == 10 * S + int(1.99 * S) + 5 * S + 1 * S
    plan, step = sessions(tmp_path, {"file": "users.csv", "pick": "unique"}, session_timeout="5s")
    assert plan.end_ns(10 * S, step) == 10 * S + int(0.49 * S) + 5 * S + 1 * S


@pytest.mark.parametrize(
    ("generators", "free_cpus", "embedded", "count"),
    [(None, 8, True, 4), (None, 8, False, 8), (None, 0.5, False, 1), (3, 1, True, 3)],
)
def test_generator_count(generators, free_cpus, embedded, count):
    document = scenario(generators=generators) if generators else scenario()
    assert generator_count(document, free_cpus, embedded) == count


def test_a_fault_mark_says_what_changed_in_the_schedules_order_and_units():
    from blastradius.cluster.plan import _marks
    from blastradius.targets.faults import Fault
    from blastradius.targets.spec import parse_latency_spec

    (latency,) = parse_latency_spec("2s")
    fault = Fault(
        5 * S,
        (1, 3),
        latency=latency,
        error_p=0.5,
        reset_p=0.25,
        hang_p=0.0,
        bandwidth_bps=1000,
    )
    assert [k for k, _ in fault.changes()] == ["latency", "errors", "resets", "hangs", "bandwidth"]
    (mark,) = _marks([fault])
    assert (mark.at_s, mark.label) == (
        5.0,
        "endpoints 1,3: latency 2s, errors 0.5, resets 0.25, hangs 0, bandwidth 1000B/s",
    )
    (only,) = _marks([Fault(0, None, error_p=1.0)])
    assert only.label == "all endpoints: errors 1"


def test_http2_reaches_the_generators_shares_and_the_async_targets_command():
    targets = [
        {"name": "h2", "url": "https://a/x", "http": 2, "streams": 7},
        {"name": "pool", "kind": "async", "max_connections": 2, "dependency_http": 2},
    ]
    plan = build_plan(scenario(targets=targets), 2)
    direct, launched = plan.steps
    shares = plan.shares(direct, None, 0)
    assert [(s.http, s.streams) for s in shares] == [("2", 7), ("2", 7)]
    assert launched.service.args == ("--max-connections", "2", "--dependency-http2")
    assert "over HTTP/2" in launched.service.about
    assert [(s.http, s.streams) for s in plan.shares(launched, "http://h:1", 0)] == [
        ("1.1", 100),
        ("1.1", 100),
    ]
