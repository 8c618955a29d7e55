"""run.json, defined once (``workers.run_record``): written and read by one definition,
versioned, and a run written before formats were numbered still reads, reports and
checks.

``tests/data/run-format-0/`` is a real run of ``today.yaml`` beside it, made with the
code of 2026-12-06 before this module existed: a launched target with dependency
faults, a target given by its requests through a fault-injecting proxy, objectives,
and an ``abort`` that stopped the second target's load.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from blastradius.analysis.load import load
from blastradius.workers.run_record import (
    FORMAT,
    Aborted,
    DataWritten,
    FaultMark,
    GeneratorEnd,
    GeneratorState,
    Missing,
    Objectives,
    PatternEvent,
    PatternsWritten,
    ProxyCounts,
    RayInfo,
    RequestWritten,
    RouteCounts,
    RunRecord,
    RunStatus,
    ServicesInfo,
    TargetBlock,
    TlsWritten,
    Totals,
    Versions,
)

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]
OLD_RUN = Path(__file__).parent / "data" / "run-format-0" / "today-20261206T140220Z-bd89"


def old_document() -> dict:
    return json.loads((OLD_RUN / "run.json").read_text())


def test_a_run_json_of_format_0_reads_into_the_records_and_writes_back_the_same():
    document = old_document()
    assert "format" not in document
    record = RunRecord.from_json(document)
    assert record.format == 0
    assert record.to_json() == {"format": 0, **document}


def test_a_run_json_of_format_0_reads_as_the_run_it_was():
    record = load(str(OLD_RUN)).manifest
    assert record.run_id == OLD_RUN.name and record.status == RunStatus.COMPLETED
    assert list(record.targets) == ["async", "site"]
    site = record.target("site")
    assert site.aborted is not None and site.aborted.reason.startswith("availability >= 0.99")
    (generator,) = site.generators
    assert generator.state == GeneratorState.STOPPED and generator.rows == 19
    assert generator.errors == {"http": 16} and not generator.gone
    (route,) = site.proxies["upstream"].routes
    assert (route.route, route.requests, route.errors) == ("GET /index", 13, 10)
    assert site.proxies["upstream"].unmatched == 6
    assert site.requests is not None and site.requests[0].headers == ("Authorization",)
    assert site.requests[1] == RequestWritten(
        "http://127.0.0.1:18432/other", "POST", ("Content-Type",), 7
    )
    assert site.tls is None and record.target("async").requests is None
    assert record.target("async").faults == (FaultMark(1.0, "endpoint 1: latency 50ms"),)
    assert record.load_starts() == {"async": 1796565748572682760, "site": 1796565765410532208}
    assert record.totals == {"async": Totals(120, 120, {}), "site": Totals(19, 3, {"http": 16})}
    assert record.objectives["site"] == Objectives(
        (("availability", 0.99), ("p99", 200.0), ("errors.http", 0.2)), abort=True
    )
    assert record.ray == RayInfo(True, None, 1, 1) and record.versions.schema == "2"


def test_a_run_of_format_0_is_analyzed_reported_and_checked_by_the_cli(tmp_path):
    run = tmp_path / OLD_RUN.name
    shutil.copytree(OLD_RUN, run)
    analyzed = subprocess.run([*BLASTRADIUS, "analyze", str(run)], capture_output=True, text=True)
    assert analyzed.returncode == 0, analyzed.stderr
    table = [line.split() for line in analyzed.stdout.splitlines()][:3]  # then objectives
    assert [row[:3] for row in table[1:]] == [["async", "120", "120"], ["site", "19", "3"]]
    assert "site        errors.http <= 20.000%" in analyzed.stdout
    checked = subprocess.run(
        [*BLASTRADIUS, "check", str(run), "--json"], capture_output=True, text=True
    )
    assert checked.returncode == 3, checked.stderr  # the site target missed its objectives
    verdicts = json.loads(checked.stdout)["runs"][OLD_RUN.name]
    assert verdicts["status"] == "completed" and verdicts["met"] is False
    assert {v["target"] for v in verdicts["objectives"]} == {"async", "site"}
    reported = subprocess.run(
        [*BLASTRADIUS, "report", str(run), "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
    )
    assert reported.returncode == 0, reported.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<td>upstream</td><td><code>GET /index</code></td><td>13</td>" in page
    assert "<b>site</b>: SPREAD placement" in page


def test_a_newer_format_is_refused_naming_the_file_and_the_format(tmp_path):
    run = tmp_path / "newer-1"
    shutil.copytree(OLD_RUN, run)
    (run / "run.json").write_text(json.dumps({**old_document(), "format": FORMAT + 1}))
    with pytest.raises(ValueError, match=f"^run.json format {FORMAT + 1} is newer"):
        RunRecord.from_json(json.loads((run / "run.json").read_text()))
    analyzed = subprocess.run([*BLASTRADIUS, "analyze", str(run)], capture_output=True, text=True)
    assert analyzed.returncode == 2 and "Traceback" not in analyzed.stderr
    (line,) = analyzed.stderr.strip().splitlines()
    assert f"{run}/run.json: run.json format {FORMAT + 1} is newer" in line


def test_keys_a_reader_does_not_know_are_ignored():
    document = {**old_document(), "format": FORMAT, "added_later": {"x": 1}}
    document["targets"]["async"]["added_later"] = 1
    assert "added_later" not in RunRecord.from_json(document).to_json()


def everything() -> RunRecord:
    lost = GeneratorEnd(
        1,
        "node-b",
        GeneratorState.LOST,
        lost_at="2026-12-06T10:00:01.000+00:00",
        lost_at_ns=1,
        error="the actor died",
        missing=Missing("2026-12-06T10:00:00.000+00:00", None),
    )
    done = GeneratorEnd(
        0, "node-a", GeneratorState.COMPLETED, 10, 9, {"timeout": 1}, 0.5, checks={"a: b": 2}
    )
    block = TargetBlock(
        generators=(done, lost),
        urls=("http://h/a",),
        requests=(RequestWritten("http://h/a", "PUT", ("A",), 3, 0.5),),
        tls=TlsWritten(True, False, True),
        placement="SPREAD",
        start="s",
        start_ns=5,
        planned_end="e",
        faults=(FaultMark(1.5, "all endpoints: latency 2s"),),
        aborted=Aborted("a", "why"),
        proxies={"p": ProxyCounts((RouteCounts("GET /", 5, 1, 1, 1, 1, 1),), 2, 3)},
        steps=("login", "pay"),
        data=DataWritten(10, "unique", 20, 10),
        flow="flows.py:checkout",
        patterns=PatternsWritten(
            {"breaker.opened": 1, "shed.shed": 4, "limit.current": 7},
            (
                PatternEvent(10.5, "breaker", "opened", endpoint=9),
                PatternEvent(11.0, "shed", "shed", 4, until_s=11.5),
                PatternEvent(12.0, "limit", "changed", value=7),
            ),
            dropped=2,
        ),
        dependency_calls=12,
    )
    return RunRecord(
        "run-1",
        RunStatus.PARTIAL,
        {"name": "run"},
        "s",
        "e",
        RayInfo(False, "127.0.0.1:6379", 2, 3),
        Versions("1", "2", "3", "4", "2"),
        {"t": block, "u": TargetBlock()},
        {"t": Objectives((("p99", 300.0),), window_ns=10, abort=True)},
        ServicesInfo("node-a", {"dependency": "http://d"}),
        {"t": Totals(10, 9, {"timeout": 1})},
        "a generator failed",
    )


@pytest.mark.parametrize(
    "record",
    [
        everything(),
        RunRecord("bare"),
        RunRecord("no-services", services=ServicesInfo(), totals={}),
        RunRecord("running", targets={"t": TargetBlock((GeneratorEnd(0, "n"),))}),
    ],
    ids=["everything", "bare", "no-services", "running"],
)
def test_every_record_reads_back_what_it_wrote(record):
    text = json.dumps(record.to_json())
    assert RunRecord.from_json(json.loads(text)) == record


def test_a_key_whose_value_is_absent_is_left_out_as_it_always_was():
    document = RunRecord("bare").to_json()
    assert set(document) == {
        "format",
        "run_id",
        "status",
        "scenario",
        "started",
        "ended",
        "ray",
        "versions",
        "targets",
    }
    running = GeneratorEnd(0, "n").to_json()
    assert running == {"worker": 0, "node": "n", "state": "running"}
    ended = GeneratorEnd(0, "n", GeneratorState.COMPLETED, 0, 0, {}, None).to_json()
    assert ended["send_lag_p99_ms"] is None and ended["errors"] == {}  # none sent: said
    launched = TargetBlock(urls=("u",)).to_json()
    assert launched == {"generators": [], "urls": ["u"]}  # no requests, no tls
    given = TargetBlock(urls=("u",), requests=()).to_json()
    assert given["requests"] == [] and given["tls"] is None  # tls said, even as none
    assert ServicesInfo().to_json() == {}


@pytest.mark.parametrize(
    ("event", "label", "document"),
    [
        (
            PatternEvent(1.5, "breaker", "half_open", endpoint=9),
            "breaker 9 half-open",
            {"at_s": 1.5, "pattern": "breaker", "event": "half_open", "count": 1, "endpoint": 9},
        ),
        (
            PatternEvent(2.0, "bulkhead", "rejected", 30, 4.5, 9),
            "bulkhead 9 rejected x30",
            {"at_s": 2.0, "pattern": "bulkhead", "event": "rejected", "count": 30,
             "until_s": 4.5, "endpoint": 9},
        ),
        (
            PatternEvent(3.0, "limit", "changed", value=12),
            "limit changed 12",
            {"at_s": 3.0, "pattern": "limit", "event": "changed", "count": 1, "value": 12},
        ),
    ],
)  # fmt: skip
def test_a_patterns_event_is_written_with_what_it_has_and_labelled_for_a_plot(
    event, label, document
):
    assert event.to_json() == document
    assert PatternEvent.from_json(document) == event
    assert event.label == label


def test_a_proxys_counts_over_a_load_are_the_difference_of_its_stats():
    before = ProxyCounts((RouteCounts("GET /a", 10, 1, 2, 3, 4, 5), RouteCounts("~^/b", 1)), 3, 4)
    after = ProxyCounts((RouteCounts("GET /a", 15, 3, 5, 7, 9, 11), RouteCounts("~^/b", 4)), 9, 9)
    assert after.since(before) == ProxyCounts(
        (RouteCounts("GET /a", 5, 2, 3, 4, 5, 6), RouteCounts("~^/b", 3)), 6, 5
    )
    assert RouteCounts("r", 1, 2, 3, 4, 5, 6).to_json() == {
        "route": "r",
        "requests": 1,
        "delayed": 2,
        "errors": 3,
        "resets": 4,
        "hangs": 5,
        "throttled": 6,
    }


@pytest.mark.parametrize(
    ("state", "gone", "fate"),
    [
        (GeneratorState.RUNNING, False, None),
        (GeneratorState.COMPLETED, False, None),
        (GeneratorState.STOPPED, False, None),
        (GeneratorState.LOST, True, "was lost"),
        (GeneratorState.FAILED, True, "failed"),
    ],
)
def test_which_generators_are_gone_and_how_they_went(state, gone, fate):
    generator = GeneratorEnd(0, "n", state)
    assert generator.gone is gone
    if gone:
        assert generator.fate == fate


def test_a_run_is_finished_only_when_it_completed():
    assert [s for s in RunStatus if RunRecord("r", s).finished] == [RunStatus.COMPLETED]


def test_a_run_json_without_a_status_did_not_finish():
    assert RunRecord.from_json({"run_id": "r"}).status == RunStatus.RUNNING
    assert RunRecord.from_json({}, run_id="from-the-directory").run_id == "from-the-directory"


def test_counts_a_proxy_did_not_report_are_none_at_all():
    assert RouteCounts.from_json({"route": "r"}) == RouteCounts("r", 0, 0, 0, 0, 0, 0)
    assert ProxyCounts.from_json({}) == ProxyCounts() == ProxyCounts((), 0, 0)


def test_a_generators_end_replaces_its_own_entry_only():
    block = TargetBlock(generators=(GeneratorEnd(0, "a"), GeneratorEnd(1, "b")))
    ended = GeneratorEnd(1, "b", GeneratorState.COMPLETED, 5, 5, {}, 0.1)
    assert block.with_generator(ended).generators == (GeneratorEnd(0, "a"), ended)


def test_a_format_after_this_ones_is_newer_and_refused():
    assert RunRecord.from_json({"run_id": "r", "format": 1}).format == 1
    with pytest.raises(ValueError, match=r"^run.json format 2 is newer than this blastradius"):
        RunRecord.from_json({"run_id": "r", "format": 2})


@pytest.mark.parametrize(
    ("thresholds", "problem"),
    [
        ((("availability", 1.5),), "availability: a share, from 0 to 1"),
        ((("errors.timeout", 1.01),), "errors.timeout: a share, from 0 to 1"),
        ((("errors.", 0.1),), "errors.: not an objective"),
        ((("errors.ok", 0.1),), "errors.ok: not an objective"),
        ((("p99", -1.0),), "p99: must be a finite number >= 0"),
        ((("p99", float("nan")),), "p99: must be a finite number >= 0"),
    ],
)
def test_objectives_out_of_their_range_are_refused_by_name(thresholds, problem):
    with pytest.raises(ValueError, match=f"^{problem}"):
        Objectives(thresholds)


@pytest.mark.parametrize(
    "thresholds",
    [
        (("availability", 1.0),),
        (("errors.timeout", 1.0),),
        (("errors.tls", 0.0),),
        (("p99", 5000.0),),
        (("goodput_rps", 2.0),),
    ],
)
def test_objectives_at_the_edges_of_their_range_are_taken(thresholds):
    assert Objectives(thresholds).thresholds == thresholds


@pytest.mark.parametrize(
    "record",
    [
        RunRecord("r"),
        TargetBlock(),
        GeneratorEnd(0, "n"),
        Objectives(),
        ProxyCounts(),
        RouteCounts("r"),
        Totals(),
        Missing(None, None),
        Aborted(None, "why"),
        FaultMark(1.0, "x"),
        PatternEvent(1.0, "shed", "shed"),
        PatternsWritten(),
        RayInfo(),
        Versions(),
        ServicesInfo(),
        RequestWritten("http://h/"),
        TlsWritten(),
    ],
    ids=lambda record: type(record).__name__,
)
def test_every_record_is_frozen(record):
    import dataclasses

    name = dataclasses.fields(record)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(record, name, getattr(record, name))


def test_totals_not_reported_are_none():
    assert Totals.from_json({}) == Totals() == Totals(0, 0, {})


@pytest.mark.parametrize(("window_ns", "taken"), [(-1, False), (0, False), (1, True)])
def test_a_window_is_at_least_a_nanosecond(window_ns, taken):
    if taken:
        assert Objectives(window_ns=window_ns).window_ns == window_ns
    else:
        with pytest.raises(ValueError, match=r"^window: must be positive"):
            Objectives(window_ns=window_ns)


def test_what_a_record_does_not_say_is_none_or_zero():
    assert RouteCounts("r") == RouteCounts("r", 0, 0, 0, 0, 0, 0)
    assert GeneratorEnd.from_json({}) == GeneratorEnd(0, "")


def test_the_first_generators_end_replaces_it_alone():
    block = TargetBlock(generators=(GeneratorEnd(0, "a"), GeneratorEnd(1, "b")))
    ended = GeneratorEnd(0, "a", GeneratorState.LOST)
    assert block.with_generator(ended).generators == (ended, GeneratorEnd(1, "b"))


def test_a_template_is_written_down_with_its_secrets_left_out():
    written = RequestWritten("http://h/", "POST", ("Authorization", "X-A"), 0, None).to_json()
    assert written == {
        "url": "http://h/",
        "method": "POST",
        "headers": {"Authorization": "<redacted>", "X-A": "<redacted>"},
    }
    assert RequestWritten.from_json(written) == RequestWritten(
        "http://h/", "POST", ("Authorization", "X-A")
    )
    assert RequestWritten.from_json({"url": "u"}) == RequestWritten("u", "GET", (), 0, None)
    assert TlsWritten.from_json({}) == TlsWritten(True, False, False)


def test_a_session_targets_failed_checks_are_a_warning_most_frequent_first():
    from blastradius.analysis.load import Runs
    from blastradius.analysis.table import warnings

    def ended(worker: int, checks: dict[str, int]) -> GeneratorEnd:
        state = GeneratorState.COMPLETED
        return GeneratorEnd(worker, "n", state, 1, 1, {}, 0.1, checks=checks)

    few = {"login: capture token": 3, "pay: expect status: got 409": 1}
    more = {"login: capture token": 2, **{f"s{i}: expect body": 1 for i in range(5)}}
    block = TargetBlock(generators=(ended(0, few), ended(1, more)))
    record = RunRecord("r", RunStatus.COMPLETED, targets={"shop": block, "plain": TargetBlock()})
    assert warnings(Runs(None, {"r": record}), {}) == [
        "warning: shop: failed checks: login: capture token (5); "
        "pay: expect status: got 409 (1); s0: expect body (1); s1: expect body (1); "
        "s2: expect body (1); 2 more in run.json"
    ]
