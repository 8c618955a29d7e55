"""Sessions of steps against a real server (aiohttp, the shop app): values captured and
carried over, think times, expectations, and what a failed or cut session records."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import yaml
from real_servers import aiohttp_shop
from waits import wait_for

from blastradius import analysis
from blastradius.analysis import slo
from blastradius.analysis.load import locate
from blastradius.analysis.scan import FileFigures
from blastradius.analysis.sessions import frame_figures, session_figures
from blastradius.analysis.stats import summary
from blastradius.cluster.slo_keys import parse_objectives
from blastradius.targets.runtime import new_event_loop
from blastradius.targets.spec import Fixed
from blastradius.workers.generator import ClosedLoop, Generator, Share, run_share
from blastradius.workers.journey import (
    Capture,
    Expect,
    Journey,
    Loop,
    Step,
    TestData,
    compile_text,
)
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.schedule import Schedule
from blastradius.workers.shards import write_shard

S = 1_000_000_000
MS = 1_000_000
CLI = [sys.executable, "-m", "blastradius.cluster"]


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    with aiohttp_shop() as url:
        yield url


def steps(*specs: dict) -> tuple[Step, ...]:
    """Steps from plain specs; each may use the values the steps before it capture."""
    known: set[str] = set()
    built = []
    for spec in specs:
        spec = dict(spec)
        spec["url"] = compile_text(spec["url"], known, {})
        headers = spec.get("headers", {}).items()
        spec["headers"] = tuple((k, compile_text(v, known, {})) for k, v in headers)
        spec["body"] = compile_text(spec.get("body", ""), known, {})
        built.append(Step(**spec))
        known |= {capture.name for capture in spec.get("captures", ())}
    return tuple(built)


def shop_journey(url: str, user: str = "ann", think_ms: int = 0, **login) -> tuple[Step, ...]:
    """Log in, list the items, pay for the first: each step needs what the last gave."""
    think = Fixed(think_ms * MS) if think_ms else None
    return steps(
        {
            "name": "login",
            "url": f"{url}/login",
            "method": "POST",
            "body": f'{{"user": "{user}"}}',
            "json_body": True,
            "captures": (Capture("token", "json", "$.token"),),
            **login,
        },
        {
            "name": "items",
            "url": f"{url}/items",
            "headers": {"Authorization": "Bearer ${token}"},
            "think": think,
            "captures": (
                Capture("item", "json", "$.items[0].id"),
                Capture("cart", "header", "X-Cart"),
            ),
            "expect": Expect(json=(("$.user", user),)),
        },
        {
            "name": "pay",
            "url": f"{url}/pay/${{item}}",
            "method": "POST",
            "headers": {"Authorization": "Bearer ${token}"},
            "body": '{"cart": "${cart}"}',
            "json_body": True,
            "expect": Expect(json=(("$.paid", 7),)),
        },
    )


def run(journey: Journey, rate: float, seconds: float) -> pd.DataFrame:
    return run_summarised(journey, rate, seconds)[1]


def run_summarised(journey: Journey, rate: float, seconds: float):
    """The generator's summary and its rows (by ``seq``)."""
    schedule = Schedule.constant_rate(rate, duration_ns=int(seconds * S))
    share = Share("shop", (), schedule, timeout_ns=5 * S, journey=journey)
    batches: list[pa.RecordBatch] = []
    summary = run_share(share, batches.append)
    return summary, pa.Table.from_batches(batches).to_pandas().sort_values("seq")


def test_sessions_carry_captured_values_from_step_to_step(shop):
    rows = run(Journey(shop_journey(shop)), rate=20, seconds=1)
    # 20 sessions of 3 steps, every one ok: the server refuses a step without the token,
    # the item and the cart the earlier steps captured.
    assert len(rows) == 60
    assert rows.groupby("endpoint").size().to_dict() == {0: 20, 1: 20, 2: 20}
    assert rows["ok"].all() and set(rows["status"]) == {200}
    assert (rows["sent_ns"] >= rows["intended_ns"]).all()
    assert rows["seq"].tolist() == list(range(60))
    # Each session's rows carry its index in the run and their step's, in order.
    assert (rows["step"] == rows["endpoint"]).all()
    by_session = rows.sort_values("intended_ns").groupby("session")["step"].agg(list)
    assert by_session.to_dict() == {i: [0, 1, 2] for i in range(20)}


def test_a_step_is_due_when_the_last_ended_plus_its_think_time(shop):
    rows = run(Journey(shop_journey(shop, think_ms=200)), rate=1, seconds=1)
    login, items, pay = (rows[rows["endpoint"] == i].iloc[0] for i in range(3))
    assert login["ok"] and items["ok"] and pay["ok"]
    # The think time counts from the end of the last step, and latency from when it was due.
    assert items["intended_ns"] - login["done_ns"] == 200 * MS
    assert items["sent_ns"] >= items["intended_ns"]
    assert items["latency_ns"] == items["done_ns"] - items["intended_ns"]
    # No think time: due the moment the last ended.
    assert pay["intended_ns"] == items["done_ns"]


@pytest.mark.parametrize(
    ("login", "first_error", "status", "checks"),
    [
        # An expectation that does not hold is a check failure of that step, counted
        # under the check's name (not what the response held).
        (
            {"expect": Expect(json=(("$.token", "nope"),))},
            "check",
            200,
            {"login: expect json $.token": 5},
        ),
        # So is a capture that finds nothing.
        (
            {"captures": (Capture("token", "json", "$.absent"),)},
            "check",
            200,
            {"login: capture token": 5},
        ),
        # A status the step does not expect is http, whatever its captures.
        ({"expect": Expect(statuses=((201, 201),))}, "http", 200, {}),
    ],
)
def test_a_failed_step_ends_its_session_and_the_rest_are_skipped(
    shop, login, first_error, status, checks
):
    summary, rows = run_summarised(Journey(shop_journey(shop, **login)), rate=5, seconds=1)
    assert summary.checks == checks
    assert len(rows) == 15
    first = rows[rows["endpoint"] == 0]
    assert (first["error"] == first_error).all() and (first["status"] == status).all()
    rest = rows[rows["endpoint"] > 0]
    assert (rest["error"] == "skipped").all() and rest["sent_ns"].isna().all()
    assert not rest["ok"].any()
    # The skipped steps are the failed sessions' own.
    assert rows.groupby("session")["step"].agg(sorted).to_dict() == {i: [0, 1, 2] for i in range(5)}


def test_a_wrong_token_is_an_http_failure_not_ok(shop):
    # The token is captured from the wrong place: the shop refuses it, and the row says so.
    login, items, pay = shop_journey(shop)
    wrong = dataclasses.replace(login, captures=(Capture("token", "header", "Content-Type"),))
    rows = run(Journey((wrong, items, pay)), rate=2, seconds=1)
    assert rows.groupby("step")["error"].agg(set).to_dict() == {
        0: {""},
        1: {"http"},
        2: {"skipped"},
    }
    assert set(rows[rows["step"] == 1]["status"]) == {401}


def test_an_expected_error_status_is_ok(shop):
    # Logging in with no user is refused (401); a step that expects that is ok, and the
    # session goes on (to a step that then fails: it has no token to send).
    journey = steps(
        {
            "name": "refused",
            "url": f"{shop}/login",
            "method": "POST",
            "body": "{}",
            "expect": Expect(statuses=((401, 401),), json=(("$.error", "who are you?"),)),
        },
        {"name": "items", "url": f"{shop}/items"},
    )
    rows = run(Journey(journey), rate=2, seconds=1)
    assert rows.groupby("endpoint")["error"].agg(set).to_dict() == {0: {""}, 1: {"http"}}
    assert set(rows[rows["endpoint"] == 0]["status"]) == {401}


def test_a_captured_value_that_cannot_go_on_the_wire_is_a_check_failure(shop):
    # The server's token holds a line break: in a header it would split the request.
    summary, rows = run_summarised(Journey(shop_journey(shop, user="broken")), rate=2, seconds=1)
    assert summary.checks == {"items: a value cannot go on the wire": 2}
    login, items, pay = (rows[rows["endpoint"] == i] for i in range(3))
    assert login["ok"].all()
    assert (items["error"] == "check").all() and items["sent_ns"].isna().all()
    assert (pay["error"] == "skipped").all()


def test_no_step_starts_after_the_sessions_timeout(shop):
    journey = Journey(shop_journey(shop, think_ms=2000), timeout_ns=500 * MS)
    rows = run(journey, rate=2, seconds=1)
    assert rows.groupby("endpoint")["error"].agg(set).to_dict() == {
        0: {""},
        1: {"skipped"},
        2: {"skipped"},
    }
    # Recorded when the session's time ran out, not when its think time would have.
    items = rows[rows["endpoint"] == 1]
    login = rows[rows["endpoint"] == 0]
    assert (items["intended_ns"].to_numpy() - login["intended_ns"].to_numpy() == 500 * MS).all()


def test_a_stop_records_the_sessions_between_steps_as_skipped(shop):
    journey = Journey(shop_journey(shop, think_ms=30_000))
    schedule = Schedule.constant_rate(10, duration_ns=1 * S)
    share = Share("shop", (), schedule, timeout_ns=5 * S, journey=journey)
    batches: list[pa.RecordBatch] = []
    generator = Generator(share, batches.append)
    ran = threading.Thread(target=lambda: run_generator(generator))
    ran.start()
    # Every session has logged in and thinks for 30 s: a stop ends them at once.
    wait_for(lambda: generator.counters.rows, lambda rows: rows >= 10, timeout_s=30)
    generator.stop()
    ran.join(timeout=30)
    assert not ran.is_alive()
    rows = pa.Table.from_batches(batches).to_pandas()
    assert rows.groupby("endpoint")["error"].agg(set).to_dict() == {
        0: {""},
        1: {"skipped"},
        2: {"skipped"},
    }
    assert len(rows) == 30


def run_generator(generator: Generator) -> None:
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(generator.run())


def test_a_share_has_steps_or_requests_and_sessions_arrive_open_loop(shop):
    journey = Journey(shop_journey(shop))
    load = Schedule.constant_rate(1, duration_ns=S)
    with pytest.raises(ValueError, match="steps or requests, not both"):
        Share("x", (f"{shop}/a",), load, S, journey=journey)
    with pytest.raises(ValueError, match="sessions arrive open loop"):
        Share("x", (), ClosedLoop(2, duration_ns=S), S, journey=journey)
    with pytest.raises(ValueError, match="at least one URL"):
        Share("x", (), load, S)


def test_a_session_scenario_runs_end_to_end_through_the_cli(shop, tmp_path):
    """``blastradius run`` on the embedded Ray: two generators share the arrivals and
    the test data (in the plan), unique rows end the load, and run.json says so and
    names the steps whose index is each row's endpoint."""
    (tmp_path / "users.csv").write_text("user\n" + "".join(f"e2e-{i}\n" for i in range(15)))
    scenario = {
        "name": "sessions",
        "load": {"rate": 10, "duration": "2s", "timeout": "5s"},
        "generators": 2,
        "targets": [
            {
                "name": "shop",
                "session_timeout": "20s",
                "data": {"file": "users.csv", "pick": "unique"},
                "slo": {"session_availability": 0.99, "session_p99": "20s"},
                "steps": [
                    {
                        "name": "login",
                        "method": "POST",
                        "url": f"{shop}/login?once",
                        "json": {"user": "${row.user}"},
                        "capture": {"token": {"json": "$.token"}},
                    },
                    {
                        "name": "items",
                        "url": f"{shop}/items",
                        "think": "50ms",
                        "headers": {"Authorization": "Bearer ${token}"},
                        "capture": {
                            "item": {"json": "$.items[0].id"},
                            "cart": {"header": "X-Cart"},
                        },
                        "expect": {"body": "items"},
                    },
                    {
                        "name": "pay",
                        "method": "POST",
                        "url": f"{shop}/pay/${{item}}",
                        "headers": {"Authorization": "Bearer ${token}"},
                        "json": {"cart": "${cart}"},
                        "expect": {"status": 200, "json": {"$.paid": 7}},
                    },
                ],
            },
            # The same journey written in Python: its module travels in the plan.
            {"name": "flow", "steps": {"python": "flows.py:checkout"}},
        ],
    }
    (tmp_path / "flows.py").write_text(
        f"BASE = {shop!r}\n\n"
        "async def checkout(session, row):\n"
        "    login = await session.post(f'{BASE}/login', json={'user': 'ann'})\n"
        "    auth = {'Authorization': 'Bearer ' + login.json()['token']}\n"
        "    items = await session.get(f'{BASE}/items', headers=auth)\n"
        "    cart = {'cart': items.header('X-Cart')}\n"
        "    await session.post(f'{BASE}/pay/7', headers=auth, json=cart)\n"
    )
    path = tmp_path / "sessions.yaml"
    path.write_text(yaml.safe_dump(scenario))
    command = [sys.executable, "-m", "blastradius.cluster", "run", str(path)]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    # The session objectives were judged at the end, and met (exit 0).
    lines = result.stdout.splitlines()
    judged = [
        line.split()[:2] for line in lines if line.startswith("shop  ") and "session_" in line
    ]
    assert judged == [["shop", "session_availability"], ["shop", "session_p99"]]
    # 20 arrivals, 15 users who may each log in once: 15 sessions of 3 steps.
    assert "shop: its 15 rows of unique test data end the load after 15 of 20" in result.stdout
    flowed = pd.read_parquet(run_dir / "requests" / "target=flow")
    assert len(flowed) == 60 and flowed["ok"].all(), flowed["error"].value_counts()
    assert flowed.groupby("session")["step"].agg(sorted).to_dict() == {
        i: [0, 1, 2] for i in range(20)
    }
    rows = pd.read_parquet(run_dir / "requests" / "target=shop")
    assert len(rows) == 45 and rows["ok"].all(), rows["error"].value_counts()
    assert rows.groupby("endpoint").size().to_dict() == {0: 15, 1: 15, 2: 15}
    assert set(rows["worker"]) == {0, 1}
    # Session ids are the run's: generator k starts sessions k, k + 2, ...
    assert rows.groupby("session")["step"].agg(sorted).to_dict() == {
        i: [0, 1, 2] for i in range(15)
    }
    assert ((rows["session"] % 2) == rows["worker"]).all()
    manifest = json.loads((run_dir / "run.json").read_text())
    target = manifest["targets"]["shop"]
    assert target["steps"] == ["login", "items", "pay"]
    assert target["urls"] == [f"{shop}/login?once", f"{shop}/items", f"{shop}/pay/${{item}}"]
    assert target["data"] == {"rows": 15, "pick": "unique", "arrivals": 20, "sessions": 15}
    assert manifest["totals"]["shop"] == {"requests": 45, "ok": 45, "errors": {}}
    assert manifest["totals"]["flow"] == {"requests": 60, "ok": 60, "errors": {}}
    assert "steps" not in manifest["targets"]["flow"]  # a flow's steps are its own
    written = manifest["scenario"]["targets"][0]["steps"][1]["headers"]
    assert written == {"Authorization": "<redacted>"}
    analyzed = subprocess.run(
        [sys.executable, "-m", "blastradius.cluster", "analyze", str(run_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    shop_figures = json.loads(analyzed.stdout)["targets"]["shop"]
    assert shop_figures["ok"] == 45
    # By step, named as run.json names them, and exact: as the loaded rows give them.
    by_step = shop_figures["steps"]
    assert list(by_step) == ["0 login", "1 items", "2 pay"]
    loaded = summary(analysis.load(str(run_dir), targets=["shop"]).rows, by="step")
    assert [by_step[name] for name in by_step] == [loaded[i] for i in range(3)]
    assert all(figures["ok"] == 15 for figures in by_step.values())
    sessions = shop_figures["sessions"]
    assert (sessions["sessions"], sessions["completed"], sessions["cut"]) == (15, 15, 0)
    assert [stage["reached"] for stage in sessions["funnel"]] == [15, 15, 15]
    assert sessions["duration"]["p50_ms"] > 50  # the 50 ms think time is in the journey
    text = subprocess.run(
        [sys.executable, "-m", "blastradius.cluster", "analyze", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert "shop, sessions: 15 started, 15 completed (1.0000), 0 cut short" in text
    assert "flow, sessions: 20 started, 20 completed (1.0000)" in text
    assert "shop, by step:" in text
    # The report has the same, as a section of its page.
    out = tmp_path / "report"
    reported = subprocess.run(
        [*CLI, "report", str(run_dir), "--out", str(out)], capture_output=True, timeout=300
    )
    assert reported.returncode == 0, reported.stderr
    page = (out / "report.html").read_text()
    assert "<h2>Sessions</h2>" in page and "<h3>shop</h3>" in page and "<h3>flow</h3>" in page
    assert "15 sessions started, 15 completed (1.0000), 0 cut short" in page
    assert "<td>1 items</td><td>15</td><td>0</td><td>15</td>" in page
    steps_table = text.split("shop, by step:")[1].splitlines()
    assert [line.split()[:4] for line in steps_table[2:5]] == [
        ["0", "login", "15", "15"],
        ["1", "items", "15", "15"],
        ["2", "pay", "15", "15"],
    ]


def login_once(shop: str, data: TestData) -> Journey:
    """Log in as the session's row's user; the shop refuses a user's second login."""
    known = set(data.names)
    step = Step(
        "login",
        compile_text(f"{shop}/login?once", known, {}),
        "POST",
        body=compile_text('{"user": "${row.user}"}', known, {}),
        json_body=True,
    )
    return Journey((step,), data=data)


def run_generators(journey: Journey, arrivals: int, generators: int = 2) -> pd.DataFrame:
    """``generators`` generators, each on its own thread and loop, sharing the arrivals."""
    schedule = Schedule.constant_rate(arrivals / 2, requests=arrivals)
    batches: list[pa.RecordBatch] = []
    shares = [
        Share("shop", (), schedule, 5 * S, worker=w, workers=generators, journey=journey)
        for w in range(generators)
    ]
    threads = [threading.Thread(target=run_share, args=(s, batches.append)) for s in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return pa.Table.from_batches(batches).to_pandas()


def test_unique_rows_go_to_one_session_each_across_generators_then_the_load_ends(shop):
    rows = tuple((f"unique-{i}",) for i in range(40))
    data = TestData(("user",), rows, "unique")
    journey = login_once(shop, data)
    done = run_generators(journey, arrivals=50, generators=4)
    # 50 arrivals, 40 users: 40 sessions, each a user of its own (a second login is 409).
    assert len(done) == 40 and done["ok"].all()
    assert set(done["worker"]) == {0, 1, 2, 3}
    # Over every row: its session's row of data is used by no other session.
    used = [data.row(int(session), seed=0) for session in done["session"]]
    assert sorted(used) == list(range(40))


def test_cycled_rows_are_used_again(shop):
    rows = tuple((f"cycle-{i}",) for i in range(10))
    journey = login_once(shop, TestData(("user",), rows, "cycle"))
    done = run_generators(journey, arrivals=30)
    assert len(done) == 30
    assert done["ok"].sum() == 10 and (done.loc[~done["ok"], "status"] == 409).all()


def test_repeated_and_looped_steps_are_rows_of_their_own_and_a_failure_skips_the_rest(shop):
    login, items, pay = shop_journey(shop)
    # Log in, then list the items three times over, then pay twice (a loop of one step).
    journey = Journey(
        (login, dataclasses.replace(items, repeat=(3, 3)), pay),
        loops=(Loop(2, 2, (2, 2)),),
    )
    rows = run(journey, rate=4, seconds=1)
    orders = rows.sort_values("seq").groupby("session")["step"].agg(list)
    assert orders.to_dict() == {i: [0, 1, 1, 1, 2, 2] for i in range(4)}
    assert rows["ok"].all()
    # A failure part way: the rest of that session's order is skipped, row for row.
    failing = dataclasses.replace(items, repeat=(3, 3), expect=Expect(json=(("$.user", "x"),)))
    rows = run(Journey((login, failing, pay), loops=(Loop(2, 2, (2, 2)),)), rate=2, seconds=1)
    for _, session in rows.sort_values("seq").groupby("session"):
        assert session["step"].tolist() == [0, 1, 1, 1, 2, 2]
        assert session["error"].tolist() == ["", "check", *["skipped"] * 4]


def test_test_data_at_a_uri_is_read_by_each_generator(shop, tmp_path):
    users = tmp_path / "users.jsonl"
    users.write_text("".join(f'{{"user": "uri-{i}"}}\n' for i in range(12)))
    data = TestData(("user",), (), "unique", users.as_uri(), 12)  # as the scenario has it
    done = run_generators(login_once(shop, data), arrivals=20)
    # Both generators read the file themselves; 12 users log in once each, and no more.
    assert len(done) == 12 and done["ok"].all() and set(done["worker"]) == {0, 1}


def test_sessions_are_counted_with_their_journeys_and_where_they_ended(tmp_path, shop):
    """From the rows on disk: started, completed, cut short, the completed journeys'
    durations from the arrival, and the funnel; as the loaded rows give them."""

    login, items, pay = shop_journey(shop)
    # One session in two fails at its second step (a user other than the one expected).
    failing = dataclasses.replace(items, expect=Expect(json=(("$.user", "ann"),)))
    users = TestData(("user",), (("ann",), ("bob",)))
    journey = Journey(
        (
            dataclasses.replace(
                login, body=compile_text('{"user": "${row.user}"}', {"row.user"}, {})
            ),
            failing,
            pay,
        ),
        data=users,
    )
    schedule = Schedule.constant_rate(10, duration_ns=S)
    share = Share("shop", (), schedule, timeout_ns=5 * S, journey=journey)
    batches: list[pa.RecordBatch] = []
    run_share(share, batches.append)
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({"run_id": "run", "status": "completed"}))
    for i, batch in enumerate(batches):
        write_shard([batch], shard_dir(str(run), "shop"), shard_name(0, i))
    _, shards = locate(str(run))
    figures = session_figures(shards, 3)
    rows = analysis.load(str(run)).rows
    assert figures["sessions"] == 10 and figures["completed"] == 5 and figures["cut"] == 0
    assert figures["session_availability"] == 0.5
    assert figures["funnel"] == [
        {"step": 0, "reached": 10, "ended": 0},
        {"step": 1, "reached": 5, "ended": 5},
        {"step": 2, "reached": 5, "ended": 0},
    ]
    by_session = rows.groupby("session").agg(
        start=("intended_ns", "min"), end=("done_ns", "max"), ok=("ok", "all")
    )
    durations = np.sort((by_session["end"] - by_session["start"])[by_session["ok"]].to_numpy())
    expected = np.quantile(durations, [0.5, 0.99], method="inverted_cdf") / 1e6
    assert [figures["duration"]["p50_ms"], figures["duration"]["p99_ms"]] == expected.tolist()
    assert figures["duration"]["max_ms"] == durations[-1] / 1e6
    assert frame_figures(rows, 3) == figures  # the same from the loaded rows
    # Session objectives: judged on these figures, from the files as from the rows, and
    # by `blastradius check` (exit 3: an objective not met).
    objectives = {
        "shop": parse_objectives({"session_availability": 0.9, "session_p99": "10s"}, "slo")
    }
    on_rows = slo.check(rows, objectives)
    on_files = slo.check_figures(FileFigures(shards), objectives)
    assert on_rows == on_files
    assert [(v.objective, v.measured, v.met) for v in on_files] == [
        ("session_availability", 0.5, False),
        ("session_p99", figures["duration"]["p99_ms"], True),
    ]
    (tmp_path / "slo.yaml").write_text("session_availability: 0.4\nsession_p99: 10s\n")
    (tmp_path / "strict.yaml").write_text("session_availability: 0.6\n")
    for objectives_file, code in (("slo.yaml", 0), ("strict.yaml", 3)):
        checked = subprocess.run(
            [*CLI, "check", str(run), "--slo", str(tmp_path / objectives_file)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert checked.returncode == code, checked.stdout + checked.stderr
    # A target of no session has no session figure: its session objectives are unmet.
    plain = slo.evaluate("t", objectives["shop"], {"requests": 1, "errors": {}})
    assert [v.met for v in plain] == [False, False]
