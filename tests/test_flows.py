"""Sessions written in Python (``steps: {python: FILE:FUNCTION}``): loading the module,
and running it against a real server (aiohttp, the shop app), a row per call."""

from __future__ import annotations

import re
import textwrap
import threading
from collections.abc import Iterator

import pyarrow as pa
import pytest
from real_servers import aiohttp_shop
from test_sessions import run_generator
from waits import wait_for

from blastradius.cluster.scenario import parse_target
from blastradius.targets.validation import FieldError
from blastradius.workers.flows import Flow
from blastradius.workers.generator import Generator, Share, run_share
from blastradius.workers.journey import Journey, TestData
from blastradius.workers.schedule import Schedule

S = 1_000_000_000

CHECKOUT = """
    async def checkout(session, row):
        login = await session.post(f"{BASE}/login", json={"user": row.get("user", "ann")})
        token = login.json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        items = await session.get(f"{BASE}/items", headers=auth)
        cart = items.header("X-Cart")
        await session.post(f"{BASE}/pay/{items.json()['items'][0]['id']}", headers=auth,
                           json={"cart": cart})
"""


@pytest.fixture(scope="module")
def shop() -> Iterator[str]:
    with aiohttp_shop() as url:
        yield url


def flow(source: str, shop: str = "http://127.0.0.1:9", function: str = "checkout") -> Flow:
    return Flow("flows.py", f"BASE = {shop!r}\n" + textwrap.dedent(source), function)


@pytest.mark.parametrize(
    ("source", "function", "message"),
    [
        ("def checkout(:\n", "checkout", "flows.py line 2: "),
        ("import no_such_module\n", "checkout", "flows.py: loading it raised ModuleNotFoundError"),
        ("1 / 0\n", "checkout", "flows.py: loading it raised ZeroDivisionError: division by zero"),
        ("async def other(session, row): pass\n", "checkout", "flows.py has no 'checkout'"),
        (
            "def checkout(session, row): pass\n",
            "checkout",
            "flows.py: checkout is not an async def",
        ),
        (
            "async def checkout(session): pass\n",
            "checkout",
            "flows.py: checkout does not take (session, row)",
        ),
        (
            "async def checkout(a, b, c): pass\n",
            "checkout",
            "flows.py: checkout does not take (session, row)",
        ),
    ],
)
def test_a_flow_that_cannot_run_is_named_when_loaded(source, function, message):
    with pytest.raises(FieldError) as error:
        flow(source, function=function).load()
    assert error.value.problem.startswith(message)


def test_a_flow_loads_its_function_from_a_fresh_module_each_time():
    source = "COUNT = []\nasync def checkout(session, row, extra=1):\n    COUNT.append(1)\n"
    first, second = flow(source).load(), flow(source).load()
    assert first is not second and first.__globals__ is not second.__globals__
    assert first.__module__ == "flows"


def write(tmp_path, name: str, content: bytes | str) -> None:
    (tmp_path / name).write_bytes(content.encode() if isinstance(content, str) else content)


@pytest.mark.parametrize(
    ("steps", "files", "message"),
    [
        ({"python": "flows.py"}, {}, "targets[0].steps.python: 'flows.py': give FILE.py:FUNCTION"),
        ({"python": "flows.py:1x"}, {}, "targets[0].steps.python: 'flows.py:1x': give"),
        ({"python": "gone.py:f"}, {}, "targets[0].steps.python: cannot read 'gone.py'"),
        ({"python": "f.py:f"}, {"f.py": b"\xff"}, "targets[0].steps.python: f.py: not UTF-8 text"),
        ({"python": "f.py:f"}, {"f.py": "x = (\n"}, "targets[0].steps.python: f.py line 1: "),
        ({"python": "f.py:f", "x": 1}, {}, "targets[0].steps.x: unknown key"),
        ({}, {}, "targets[0].steps.python: expected text"),
    ],
)
def test_a_bad_flow_in_a_scenario_is_named_by_its_path(tmp_path, steps, files, message):
    for name, content in files.items():
        write(tmp_path, name, content)
    with pytest.raises(ValueError) as error:
        parse_target({"name": "s", "steps": steps}, "targets[0]", base=tmp_path)
    assert str(error.value).startswith(message)


def test_a_flow_in_a_scenario_travels_as_its_source(tmp_path):
    write(tmp_path, "flows.py", "async def checkout(session, row):\n    pass\n")
    target = parse_target(
        {"name": "s", "steps": {"python": "flows.py:checkout"}, "session_timeout": "5s"},
        "targets[0]",
        base=tmp_path,
    )
    assert target.journey.flow == Flow(
        "flows.py", "async def checkout(session, row):\n    pass\n", "checkout"
    )
    assert target.journey.steps == () and target.journey.timeout_ns == 5 * S


def run(journey: Journey, rate: float = 4, seconds: float = 1):
    schedule = Schedule.constant_rate(rate, duration_ns=int(seconds * S))
    share = Share("shop", (), schedule, timeout_ns=5 * S, journey=journey)
    batches: list[pa.RecordBatch] = []
    summary = run_share(share, batches.append)
    return summary, pa.Table.from_batches(batches).to_pandas().sort_values("seq")


def test_a_flows_calls_are_rows_of_its_session(shop):
    users = TestData(("user",), (("ann",), ("bob",)))
    summary, rows = run(Journey((), flow=flow(CHECKOUT, shop), data=users))
    # Four sessions of three calls, every one ok: each needed what the last answered.
    assert len(rows) == 12 and rows["ok"].all(), rows["error"].value_counts()
    assert rows.groupby("session")["step"].agg(list).to_dict() == {i: [0, 1, 2] for i in range(4)}
    assert (rows["sent_ns"] >= rows["intended_ns"]).all() and summary.checks == {}
    assert rows["seq"].tolist() == list(range(12))  # a row each, numbered in turn


def test_a_failed_call_is_the_flows_to_judge_and_a_raise_ends_it_as_a_check(shop):
    source = """
        async def checkout(session, row):
            refused = await session.get(f"{BASE}/items")   # no token: 401
            assert not refused.ok and refused.error == "http" and refused.status == 401
            gone = await session.get("http://127.0.0.1:9/")  # nothing listens there
            assert gone.error == "connect" and gone.status == 0 and gone.body == b""
            refused.json()["no such key"]
    """
    summary, rows = run(Journey((), flow=flow(source, shop)), rate=2)
    by_session = rows.groupby("session")["error"].agg(list).to_dict()
    assert by_session == {0: ["http", "connect", "check"], 1: ["http", "connect", "check"]}
    raised = rows[rows["error"] == "check"]
    assert raised["sent_ns"].isna().all() and (raised["step"] == 2).all()
    assert summary.checks == {"flow: raised KeyError": 2}
    assert rows["seq"].tolist() == list(range(6))  # a row each, numbered in turn


def test_a_flow_past_its_sessions_timeout_ends_at_its_next_call(shop):
    source = """
        import asyncio
        async def checkout(session, row):
            await session.get(f"{BASE}/slow")      # 300 ms
            await asyncio.sleep(0.3)
            await session.get(f"{BASE}/slow")      # past the 500 ms: not sent
            raise AssertionError("never reached")
    """
    summary, rows = run(Journey((), timeout_ns=S // 2, flow=flow(source, shop)), rate=2)
    assert len(rows) == 2 and rows["ok"].all() and (rows["step"] == 0).all()
    assert summary.checks == {}


def test_a_stop_ends_the_flows_under_way(shop):
    source = """
        import asyncio
        async def checkout(session, row):
            await session.get(f"{BASE}/slow")
            await asyncio.sleep(60)
            await session.get(f"{BASE}/slow")
    """
    schedule = Schedule.constant_rate(10, duration_ns=S)
    share = Share("shop", (), schedule, 5 * S, journey=Journey((), flow=flow(source, shop)))
    batches: list[pa.RecordBatch] = []
    generator = Generator(share, batches.append)
    ran = threading.Thread(target=run_generator, args=(generator,))
    ran.start()
    wait_for(lambda: generator.counters.rows, lambda n: n >= 10, timeout_s=30)
    generator.stop()
    ran.join(timeout=30)
    assert not ran.is_alive()
    rows = pa.Table.from_batches(batches).to_pandas()
    assert len(rows) == 10 and rows["ok"].all()


def test_a_call_that_cannot_be_sent_raises_in_the_flow(shop):
    source = """
        async def checkout(session, row):
            await session.get(f"{BASE}/items", headers={"X-A": "a\\r\\nb"})
    """
    summary, rows = run(Journey((), flow=flow(source, shop)), rate=2)
    assert rows["error"].tolist() == ["check", "check"]
    assert summary.checks == {"flow: raised FieldError": 2}
    assert re.fullmatch(r"flow: raised \w+", next(iter(summary.checks)))


def test_a_flows_calls_are_one_at_a_time(shop):
    source = """
        import asyncio
        async def checkout(session, row):
            await asyncio.gather(session.get(f"{BASE}/slow"), session.get(f"{BASE}/slow"))
    """
    summary, rows = run(Journey((), flow=flow(source, shop)), rate=2)
    # The first call is a row of its own; the second raised in the flow, which ended it.
    assert sorted(rows["error"]) == ["", "", "check", "check"]
    assert summary.checks == {"flow: raised RuntimeError": 2}
