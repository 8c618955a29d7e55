"""Scenario files: valid shapes, overrides, and malformed files refused before anything runs."""

import textwrap

import pytest
import yaml

from blastradius.cluster.cli import main
from blastradius.cluster.scenario import apply_override, load_scenario, parse_scenario
from blastradius.workers.generator import ClosedLoop
from blastradius.workers.schedule import Stage

S = 1_000_000_000

BASE = {
    "name": "t",
    "load": {"rate": 100, "duration": "3s", "timeout": "1s"},
    "dependency": {"latency": "200*9,30000"},
    "targets": [
        {"name": "sync", "kind": "blocking", "threads": 8},
        {"name": "async", "kind": "async"},
    ],
}


def scenario(**changes):
    document = yaml.safe_load(yaml.safe_dump(BASE))
    for path, value in changes.items():
        apply_override(document, f"{path.replace('__', '.')}={yaml.safe_dump(value).strip()}")
    return document


def test_a_full_scenario_parses():
    parsed = parse_scenario(scenario())
    assert parsed.name == "t"
    assert parsed.load.timeout_ns == 1 * S
    assert parsed.load.shape.expected_requests() == 300
    assert parsed.dependency.endpoints == 10 and parsed.dependency.launched
    sync, async_ = parsed.targets
    assert (sync.kind, sync.threads, async_.kind, async_.max_connections) == (
        "blocking",
        8,
        "async",
        0,
    )
    assert parsed.generators is None
    assert (sync.session_calls, async_.session_calls) == (0, 0)
    changed = scenario(targets__1__session_calls=5)
    assert parse_scenario(changed).targets[1].session_calls == 5


def test_stages_closed_loops_and_url_targets_parse():
    document = scenario()
    document["load"] = {
        "stages": [
            {"duration": "10s", "rate": 100},
            {"duration": "20s", "rate": 1000, "ramp": True},
        ],
        "arrival": "poisson",
        "seed": 3,
    }
    assert parse_scenario(document).load.shape.stages == (
        Stage(10 * S, 100, 100),
        Stage(20 * S, 100, 1000),
    )
    document["load"] = {"closed": {"concurrency": 50}, "duration": "5s"}
    assert parse_scenario(document).load.shape == ClosedLoop(50, 5 * S, None)
    document["targets"] = [{"name": "mine", "urls": ["http://127.0.0.1:1/a", "http://h/b"]}]
    del document["dependency"]
    assert parse_scenario(document).targets[0].urls == ("http://127.0.0.1:1/a", "http://h/b")


def test_overrides_set_values_and_create_blocks():
    document = scenario()
    for assignment in (
        "load.rate=500",
        "targets.0.threads=16",
        "generators=3",
        "dependency.errors=0*9,0.5",
        "load.arrival=poisson",
    ):
        apply_override(document, assignment)
    parsed = parse_scenario(document)
    assert parsed.load.shape.expected_requests() == 1500
    assert parsed.targets[0].threads == 16 and parsed.generators == 3
    assert parsed.dependency.config.error_ps == (0.0,) * 9 + (0.5,)


MALFORMED = [
    ({"load__rate": -5}, "load.rate: must be > 0"),
    ({"load__rate": "fast"}, "load.rate: expected a number"),
    ({"load__duration": "3 fortnights"}, "load.duration: unknown unit 'fortnights'"),
    ({"load__duration": "-3s"}, "load.duration: duration '-3s' is negative"),
    ({"load__timeout": "0s"}, "load.timeout: must be positive"),
    ({"load__arrival": "bursty"}, "load.arrival: 'bursty' is not one of constant, poisson"),
    ({"load__rat": 5}, "load.rat: unknown key"),
    ({"load__requests": 2.5}, "load.requests: expected a whole number"),
    ({"load__stages": [{"duration": "1s", "rate": 5}]}, "load: give exactly one of rate, stages"),
    ({"load__max_in_flight": 0}, "load.max_in_flight: must be > 0"),
    ({"generators": 0}, "generators: must be > 0"),
    ({"generators": "two"}, "generators: expected a number"),
    ({"dependency__latency": ""}, "dependency.latency: latency spec is empty"),
    ({"dependency__latency": "200*9,3q"}, "dependency.latency: latency spec item 2 '3q'"),
    ({"dependency__errors": "0,1.5"}, "dependency.errors: errors spec item 2 '1.5'"),
    (
        {"dependency__faults": [{"at": "1s", "endpoint": 10, "latency": "1s"}]},
        "dependency.faults: endpoint 10 does not exist (there are 10)",
    ),
    (
        {"dependency__faults": [{"at": "1s", "endpoint": 1}]},
        "dependency.faults[0]: give latency, errors, resets, hangs or bandwidth",
    ),
    (
        {"dependency__faults": [{"at": "1s", "endpoint": 1, "hangs": 0.5}]},
        "dependency.faults: resets, hangs and bandwidth are the proxy's",
    ),
    ({"dependency__colour": "red"}, "dependency.colour: unknown key"),
    ({"targets": []}, "targets: expected a non-empty list"),
    ({"targets__0__kind": "threaded"}, "targets[0].kind: 'threaded' is not one of blocking, async"),
    ({"targets__0__threads": 0}, "targets[0].threads: must be > 0"),
    ({"targets__1__threads": 4}, "targets[1].threads: unknown key"),
    ({"targets__1__session_calls": 0}, "targets[1].session_calls: must be > 0"),
    ({"targets__0__session_calls": 2.5}, "targets[0].session_calls: expected a whole number"),
    ({"targets__0__session_calls": "5"}, "targets[0].session_calls: expected a number"),
    ({"targets__1__name": "sync"}, "targets: the name 'sync' is used twice"),
    ({"targets__0__name": "../x"}, "targets[0].name: '../x' must be letters"),
    ({"targets__0__dependency_timeout": "soon"}, "targets[0].dependency_timeout"),
    ({"targets__0__url": "http://127.0.0.1:1/"}, "targets[0]: give exactly one of kind"),
    ({"name": 7}, "name: expected text"),
    ({"surprise": 1}, "surprise: unknown key"),
]


def write(tmp_path, document) -> str:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


@pytest.mark.parametrize(("changes", "message"), MALFORMED)
def test_malformed_scenarios_exit_2_naming_the_field_and_leave_no_run(
    changes, message, tmp_path, capsys
):
    out = tmp_path / "runs"
    code = main(["run", write(tmp_path, scenario(**changes)), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({k: v for k, v in BASE.items() if k != "targets"}, "targets: expected a non-empty list"),
        ({k: v for k, v in BASE.items() if k != "load"}, "load: missing"),
        ({**BASE, "dependency": None}, "targets[0].kind: a launched target needs a dependency"),
        ({**BASE, "targets": [{"name": "mine", "url": "ftp://x"}]}, "targets[0].url: 'ftp://x'"),
        (
            {**BASE, "dependency": {"url": "http://127.0.0.1:9", "latency": "1"}},
            "dependency.latency: a running dependency (url) is not configured here",
        ),
        (
            {**BASE, "dependency": {"url": "127.0.0.1:9"}},
            "dependency.url: '127.0.0.1:9' is not an http:// or https:// URL",
        ),
        (
            {**BASE, "targets": [{"name": "mine", "url": "http://[::1/"}]},
            "targets[0].url: 'http://[::1/' is not an http:// or https:// URL",
        ),
    ],
)
def test_structural_mistakes_are_named(document, message, tmp_path, capsys):
    code = main(["run", write(tmp_path, document), "--out", str(tmp_path / "runs")])
    assert code == 2
    assert message in capsys.readouterr().err


def test_unreadable_files_and_bad_overrides_exit_2(tmp_path, capsys):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        textwrap.dedent("""
        name: t
        load: {rate: 1
    """)
    )
    cases = [
        (["run", str(tmp_path / "missing.yaml")], "missing.yaml: No such file or directory"),
        (["run", str(broken)], "broken.yaml: not valid YAML at line"),
        (["run", write(tmp_path, scenario()), "--set", "load.rate"], "expected KEY=VALUE"),
        (
            ["run", write(tmp_path, scenario()), "--set", "targets.5.threads=1"],
            "targets has no item 5",
        ),
        (["run", write(tmp_path, scenario()), "--set", "load.rate=0"], "load.rate: must be > 0"),
    ]
    for argv, message in cases:
        assert main([*argv, "--out", str(tmp_path / "runs")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_scenario_files_in_the_repository_are_valid():
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "scenarios").glob("*.yaml"))
    assert files
    for path in files:
        load_scenario(path)


@pytest.mark.parametrize(
    ("parent", "path", "joined"),
    [
        ("targets[0]", "headers.X-A", "targets[0].headers.X-A"),
        ("targets", "[2].url", "targets[2].url"),
        ("", "load.rate", "load.rate"),
        ("dependency", "", "dependency"),
    ],
)
def test_a_field_error_is_put_in_context_by_its_path_not_its_text(parent, path, joined):
    from blastradius.targets.validation import FieldError

    error = FieldError(path, "odd: really").within(parent)
    assert (error.path, error.problem, str(error)) == (
        joined,
        "odd: really",
        f"{joined}: odd: really",
    )


def test_an_unknown_key_is_named_with_every_key_known_there():
    from blastradius.cluster.scenario import parse_load

    with pytest.raises(ValueError) as caught:
        parse_load({"rate": 5, "duration": "1s", "rat": 5})
    assert str(caught.value).startswith("load.rat: unknown key (known here: ")
    known = str(caught.value).split("known here: ")[1].rstrip(")").split(", ")
    assert {"rate", "duration", "timeout", "arrival", "stages", "closed", "requests"} <= set(known)
    assert "rat" not in known


def test_a_header_a_template_refuses_is_named_by_its_whole_path(tmp_path):
    from blastradius.cluster.scenario import parse_scenario

    document = {**BASE, "targets": [{"name": "t", "url": "http://h/", "headers": {"X-A": "a\nb"}}]}
    with pytest.raises(ValueError, match=r"^targets\[0\]\.headers\.X-A: a header value cannot"):
        parse_scenario(document)


def test_a_duration_that_is_a_boolean_is_named_as_one():
    from blastradius.targets.fields import FieldError, read_duration

    with pytest.raises(FieldError, match=r"expected a duration like 30s, got bool$"):
        read_duration(True, "load.duration")


def test_a_document_is_read_from_its_file_and_a_parse_error_names_its_first_line(
    tmp_path, monkeypatch
):
    from blastradius.targets.fields import load_document

    monkeypatch.chdir(tmp_path)
    (tmp_path / "+faults.yaml").write_text("- {at: 10s}\n")  # a name sorting before "-"
    assert load_document("+faults.yaml", "faults file") == [{"at": "10s"}]
    (tmp_path / "bad.yaml").write_text("[1, 2\n")
    with pytest.raises(ValueError) as raised:
        load_document("bad.yaml", "faults file")
    assert str(raised.value) == "faults file 'bad.yaml': not valid: while parsing a flow sequence"


# --- found by mutation testing (.ci/mutate documents) ------------------------------------


def test_the_first_of_several_unknown_keys_is_named_and_url_is_known_to_a_dependency():
    with pytest.raises(ValueError) as error:
        parse_scenario(scenario(dependency={"latency": "1", "aa": 1, "zz": 2}))
    assert str(error.value) == (
        "dependency.aa: unknown key (known here: url, latency, errors, faults, seed)"
    )


def test_a_strict_minimum_refuses_a_float_equal_to_it():
    from blastradius.targets.fields import number

    for zero in (0, 0.0):
        with pytest.raises(ValueError, match=r"must be > 0 \(got 0"):
            number(zero, "load.rate")
    assert number(0.0, "x", strict=False) == 0.0
