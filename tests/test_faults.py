"""Fault schedules: parsing, validation, and the endpoint model over time."""

import json

import pytest

from blastradius.targets.faults import (
    EndpointModel,
    EndpointState,
    Fault,
    load_faults,
    parse_fault,
    parse_faults,
)
from blastradius.targets.spec import Fixed, Uniform

MS = 1_000_000
S = 1_000_000_000


def test_parse_faults_from_a_list_and_a_mapping():
    events = [
        {"at": "10s", "endpoint": 9, "latency": "30s"},
        {"at": 5, "endpoint": [0, 1], "errors": 0.5},
        {"at": "20s", "endpoint": "all", "latency": "uniform(1ms,2ms)", "errors": 0},
    ]
    faults = parse_faults(events)
    assert faults == (
        Fault(5 * S, (0, 1), None, 0.5),
        Fault(10 * S, (9,), Fixed(30 * S), None),
        Fault(20 * S, None, Uniform(MS, 2 * MS), 0.0),
    )
    assert parse_faults({"faults": events}) == faults
    assert parse_faults(None) == ()


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ("nope", "faults: expected a list"),
        (
            [{"at": "1s", "endpoint": 0}],
            "faults[0]: give latency, errors, resets, hangs or bandwidth",
        ),
        ([{"endpoint": 0, "latency": 5}], "faults[0]: at: missing"),
        ([{"at": "1s", "latency": 5}], "faults[0]: endpoint: missing"),
        ([{"at": "1s", "endpoint": 0, "latency": 5, "when": 1}], "faults[0]: unknown key 'when'"),
        ([{"at": "1q", "endpoint": 0, "latency": 5}], "faults[0]: unknown unit 'q'"),
        ([{"at": "-1s", "endpoint": 0, "latency": 5}], "faults[0]: duration '-1s' is negative"),
        ([{"at": True, "endpoint": 0, "latency": 5}], "faults[0]: at: expected a duration"),
        ([{"at": "1s", "endpoint": "x", "latency": 5}], "faults[0]: endpoint: expected an index"),
        ([{"at": "1s", "endpoint": -1, "latency": 5}], "faults[0]: endpoint: indices must not be"),
        ([{"at": "1s", "endpoint": 0, "errors": 2}], "faults[0]: errors: probability outside"),
        ([{"at": "1s", "endpoint": 0, "errors": "x"}], "faults[0]: errors: expected a probability"),
        ([{"at": "1s", "endpoint": 0, "latency": 5}, 7], "faults[1]: expected a mapping"),
    ],
)
def test_bad_fault_events_name_the_event_and_key(events, message):
    with pytest.raises(ValueError) as info:
        parse_faults(events)
    assert message in str(info.value)


def test_load_faults_reads_yaml_and_json(tmp_path):
    yaml_file = tmp_path / "faults.yaml"
    yaml_file.write_text("- at: 10s\n  endpoint: 9\n  latency: 30s\n")
    json_file = tmp_path / "faults.json"
    json_file.write_text(json.dumps({"faults": [{"at": "10s", "endpoint": 9, "latency": "30s"}]}))
    assert load_faults(yaml_file) == load_faults(json_file) == (Fault(10 * S, (9,), Fixed(30 * S)),)

    broken = tmp_path / "broken.yaml"
    broken.write_text("- at: [unclosed\n")
    with pytest.raises(ValueError, match=r"broken\.yaml.*not valid"):
        load_faults(broken)


def test_endpoint_model_switches_at_fault_times_and_holds_until_the_next():
    base = (Fixed(200 * MS),) * 10
    faults = parse_faults(
        [
            {"at": "10s", "endpoint": 9, "latency": "30s"},
            {"at": "15s", "endpoint": "all", "errors": 0.25},
            {"at": "20s", "endpoint": 9, "latency": "200ms"},
        ]
    )
    model = EndpointModel(base, (0.0,) * 10, faults)
    table = [
        (9, 0, EndpointState(Fixed(200 * MS), 0.0)),
        (9, 10 * S - 1, EndpointState(Fixed(200 * MS), 0.0)),
        (9, 10 * S, EndpointState(Fixed(30 * S), 0.0)),
        (0, 12 * S, EndpointState(Fixed(200 * MS), 0.0)),
        (9, 15 * S, EndpointState(Fixed(30 * S), 0.25)),
        (0, 15 * S, EndpointState(Fixed(200 * MS), 0.25)),
        (9, 20 * S, EndpointState(Fixed(200 * MS), 0.25)),
        (9, 10**15, EndpointState(Fixed(200 * MS), 0.25)),
    ]
    for endpoint, elapsed_ns, expected in table:
        assert model.at(endpoint, elapsed_ns) == expected, (endpoint, elapsed_ns)


def test_endpoint_model_rejects_faults_on_missing_endpoints():
    faults = parse_faults([{"at": "1s", "endpoint": 10, "latency": "1s"}])
    with pytest.raises(ValueError, match="faults: endpoint 10 does not exist"):
        EndpointModel((Fixed(0),) * 10, (0.0,) * 10, faults)


def test_before_the_origin_an_endpoint_is_in_its_starting_state():
    model = EndpointModel(
        [Fixed(MS), Fixed(MS)],
        [0.0, 0.0],
        parse_faults([{"at": "1s", "endpoint": 1, "latency": "30s"}]),
    )
    assert model.at(1, -5 * S) == EndpointState(Fixed(MS), 0.0)
    assert model.at(1, 0) == EndpointState(Fixed(MS), 0.0)
    assert model.at(1, 1 * S) == EndpointState(Fixed(30 * S), 0.0)


@pytest.mark.parametrize(
    "event",
    [
        {"at": "10s", "endpoint": 9, "latency": "30s"},
        {"at": 1.5, "endpoint": [1, 2], "errors": 0.25},
        {"at": "250ms", "endpoint": "all", "latency": "lognormal(200ms, p99=1.5s)", "errors": 1},
        {"at": 0, "endpoint": 0, "latency": "uniform(1ms, 2ms)"},
        {"at": "3us", "endpoint": [0], "latency": "100"},
    ],
)
def test_a_fault_written_as_an_event_reads_back_equal(event):
    fault = parse_fault(event)
    assert parse_fault(fault.to_event()) == fault
    assert parse_faults(json.loads(json.dumps([fault.to_event()] * 2))) == (fault, fault)
