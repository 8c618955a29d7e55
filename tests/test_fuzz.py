"""Fuzzing the inputs: mutated scenario documents, specs, fault schedules, ``--set``
values and CLI arguments. Bad input is a ``ValueError`` (exit 2) with one line, never
another exception, never a traceback, never a run directory."""

from __future__ import annotations

import copy
import math

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from blastradius.cluster.cli import main
from blastradius.cluster.scenario import apply_override, parse_scenario
from blastradius.targets.faults import parse_faults
from blastradius.targets.patterns import parse_patterns
from blastradius.targets.spec import parse_error_spec, parse_latency_spec

BASE = {
    "name": "fuzz",
    "load": {"rate": 100, "duration": "3s", "timeout": "1s", "seed": 1},
    "generators": 1,
    "dependency": {
        "latency": "20*9,lognormal(200ms, p99=1s)",
        "errors": "0*9,0.5",
        "faults": [{"at": "1s", "endpoint": 9, "latency": "30s", "errors": 0.1}],
    },
    "targets": [
        {
            "name": "sync",
            "kind": "blocking",
            "threads": 8,
            "dependency_timeout": "1s",
            "breaker": {"failures": "50%", "window": "5s", "open_for": "2s", "probes": 3},
            "retry": {"attempts": 3, "budget": "10%", "backoff": "10ms"},
            "shed": {"queue_timeout": "100ms", "lifo_when_busy": True},
            "deadline": "propagate",
        },
        {
            "name": "async",
            "kind": "async",
            "session_calls": 5,
            "max_connections": 4,
            "bulkhead": {"per_endpoint": 2},
            "limit": {"adaptive": "gradient", "initial": 4, "max": 8, "tolerance": 1.5},
            "shed": {"queue_timeout": "50ms"},
        },
        {
            "name": "mine",
            "method": "POST",
            "url": "http://127.0.0.1:9/x",
            "headers": {"X-A": "b"},
            "json": {"k": [1, 2]},
            "slo": {"p50": "10ms", "errors": {"http": 0}},
            "deadline": "propagate",
        },
        {
            "name": "journey",
            "session_timeout": "10s",
            "steps": [
                {
                    "name": "login",
                    "method": "POST",
                    "url": "http://127.0.0.1:9/login",
                    "json": {"user": "a"},
                    "capture": {"token": {"json": "$.items[0].token"}, "rid": {"header": "X-Id"}},
                    "expect": {"status": ["2xx", 401], "json": {"$.ok": True}, "body": "ok"},
                },
                {
                    "loop": "1..3",
                    "steps": [
                        {
                            "url": "http://127.0.0.1:9/items/${token}",
                            "think": "uniform(1ms,5ms)",
                            "repeat": 2,
                            "headers": {"X-R": "${rid}"},
                            "capture": {"item": {"regex": "id=(\\d+)"}},
                        }
                    ],
                },
            ],
            "slo": {"session_availability": 0.9, "session_p99": "1s"},
        },
    ],
    "slo": {
        "availability": 0.99,
        "p99": "300ms",
        "errors": {"timeout": 0.01},
        "window": "5s",
        "abort": True,
    },
}

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=30),
        st.sampled_from(["", "0", "-1", "1e309", "nan", "10s", "5ms", "√", "../x", "${X}"]),
        st.text(alphabet="0123456789.,*()msun-=pe ", max_size=25),
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=8,
)


def paths(node: object, prefix: tuple = ()) -> list[tuple]:
    """Every path into a document (dict keys, list indices)."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += paths(value, (*prefix, index))
    return found


@st.composite
def mutated(draw) -> dict:
    """BASE with a few values replaced by junk, keys deleted, or unknown keys added."""
    document = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(document)))
        parent = document
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace" or not isinstance(parent, dict):
            parent[where[-1]] = draw(junk)
        elif action == "delete":
            del parent[where[-1]]
        else:
            parent[draw(st.text(min_size=1, max_size=10))] = draw(junk)
    return document


def one_line(exc: BaseException) -> bool:
    text = str(exc)
    return bool(text.strip()) and "\n" not in text


@SETTINGS
@given(mutated())
def test_a_mutated_scenario_parses_or_is_one_line_of_value_error(document):
    try:
        parse_scenario(document)
    except ValueError as exc:
        assert one_line(exc), repr(str(exc))


@SETTINGS
@given(st.text(max_size=60) | st.text(alphabet="0123456789.,*()msu-=plognrmaifx ", max_size=60))
def test_latency_and_error_specs_parse_or_are_one_line_of_value_error(text):
    for parse in (parse_latency_spec, lambda t: parse_error_spec(t, 10)):
        try:
            parse(text)
        except ValueError as exc:
            assert one_line(exc), repr(str(exc))


@SETTINGS
@given(junk)
def test_fault_schedules_parse_or_are_one_line_of_value_error(events):
    try:
        faults = parse_faults(events)
    except ValueError as exc:
        assert one_line(exc), repr(str(exc))
    else:
        assert all(math.isfinite(f.at_ns) for f in faults)


@SETTINGS
@given(
    st.dictionaries(
        st.sampled_from(["bulkhead", "breaker", "limit", "shed", "retry", "deadline", "x"]),
        junk
        | st.dictionaries(
            st.sampled_from(
                ["per_endpoint", "failures", "window", "open_for", "probes", "min_calls",
                 "adaptive", "initial", "min", "max", "backoff", "timeout", "tolerance",
                 "smoothing", "queue_timeout", "lifo_when_busy", "attempts", "budget"]
            ),
            junk | st.sampled_from(["50%", "150%", "aimd", "gradient", "1s", "0s", 0.5, 3]),
            max_size=5,
        ),
        max_size=3,
    )
)  # fmt: skip
def test_pattern_options_parse_or_are_one_line_of_value_error(document):
    try:
        patterns = parse_patterns(document, "targets[0]")
    except ValueError as exc:
        assert one_line(exc), repr(str(exc))
        assert str(exc).startswith("targets[0]"), str(exc)
    else:
        assert parse_patterns(patterns.to_json()) == patterns


@SETTINGS
@given(st.text(max_size=40), junk)
def test_set_values_apply_or_are_one_line_of_value_error(key, value):
    document = copy.deepcopy(BASE)
    assignment = f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
    try:
        apply_override(document, assignment)
        parse_scenario(document)
    except ValueError as exc:
        assert one_line(exc), repr(str(exc))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=mutated())
def test_the_cli_on_a_bad_scenario_exits_2_with_one_line_and_no_run(document, tmp_path_factory):
    try:
        parse_scenario(document)
    except ValueError:
        pass
    else:
        return  # a valid document would start a run: the other tests run those
    directory = tmp_path_factory.mktemp("fuzz")
    path = directory / "s.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    out = directory / "runs"
    assert main(["run", str(path), "--out", str(out)]) == 2
    assert not out.exists()


WORDS = ["--out", "--set", "--json", "--rate", "--slo", "--junit", "analyze", "report", "x=1", "-h"]


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    command=st.sampled_from(["analyze", "report", "compare", "check", "nope", "--json", ""]),
    rest=st.lists(st.text(max_size=12) | st.sampled_from(WORDS), max_size=5),
)
@example(command="analyze", rest=["", "\n", "0"])  # argparse quotes unknown arguments raw
@example(command="compare", rest=["a\u2028b", "\x1b[2J"])
def test_cli_arguments_are_handled_or_exit_2_with_one_line(command, rest, capsys):
    """Commands that read runs, with junk arguments (``run``, ``load``, ``demo`` and
    ``serve`` would start work on valid input; their bad input is fuzzed above)."""
    try:
        code = main([command, *rest] if command else rest)
    except SystemExit as exit_:  # --help
        code = exit_.code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.strip() and "\n" not in err.strip(), err


@SETTINGS
@given(
    name=st.sampled_from(["d.csv", "d.jsonl", "d.ndjson", "d.txt"]),
    content=st.binary(max_size=80)
    | st.text(alphabet='user,pw\n"{}:[]ab 1', max_size=80).map(str.encode),
)
def test_test_data_reads_or_is_one_line_of_value_error(name, content):
    from blastradius.workers.datafile import read_rows
    from blastradius.workers.journey import TestData

    try:
        TestData(*read_rows(name, content))
    except ValueError as exc:
        assert one_line(exc), repr(str(exc))


# No letters: generated text can break a module's syntax or raise, never loop or import.
CODE_JUNK = st.text(alphabet="0123456789()[]{}:=+-*/%.,'\" \n\t#\\", max_size=40)


@SETTINGS
@given(
    source=CODE_JUNK
    | st.sampled_from(
        ["async def f(session, row): pass", "def f(s, r): pass", "async def f(): pass", "f = 1"]
    ).flatmap(lambda good: CODE_JUNK.map(lambda tail: good + tail))
)
def test_a_python_flow_loads_or_is_one_line_of_value_error(source):
    from blastradius.workers.flows import Flow

    try:
        Flow("flows.py", source, "f").load()
    except ValueError as exc:
        assert one_line(exc), repr(str(exc))
