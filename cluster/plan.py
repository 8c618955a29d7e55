"""Planning, pure: how many generators, and each one's plan against a target."""

from __future__ import annotations

from cluster.scenario import Scenario, Target
from workers.generator import Plan
from workers.schedule import intended_offsets
from workers.template import RequestTemplate

EMBEDDED_MAX_GENERATORS = 4


def generator_count(scenario: Scenario, free_cpus: float, embedded: bool) -> int:
    """The scenario's count, or one per free CPU (at most 4 on an embedded cluster)."""
    if scenario.generators is not None:
        return scenario.generators
    count = max(1, int(free_cpus))
    return min(count, EMBEDDED_MAX_GENERATORS) if embedded else count


def target_requests(
    target: Target, target_url: str | None, endpoints: int
) -> tuple[RequestTemplate, ...]:
    """What a generator sends: GET ``/call/0..n-1`` of a launched target, or as given."""
    if target.launched:
        return tuple(RequestTemplate(f"{target_url}/call/{i}") for i in range(endpoints))
    return target.requests


def plans_for(
    scenario: Scenario,
    target: Target,
    requests: tuple[RequestTemplate, ...],
    generators: int,
    start_ns: int,
) -> list[Plan]:
    """One plan per generator: the same schedule, interleaved ``generators`` ways."""
    load = scenario.load
    return [
        Plan(
            target.name,
            requests,
            load.shape,
            load.timeout_ns,
            worker=worker,
            workers=generators,
            start_ns=start_ns,
            max_in_flight=load.max_in_flight,
            connections=load.connections,
            tls=target.tls,
            seed=load.seed,
        )
        for worker in range(generators)
    ]


def fault_marks(scenario: Scenario) -> list[dict]:
    """The dependency's fault events as plot marks: seconds from a target's load start."""
    if scenario.dependency is None:
        return []
    marks = []
    for fault in scenario.dependency.faults:
        endpoints = fault.endpoints
        where = (
            "all endpoints"
            if endpoints is None
            else f"endpoint{'s' if len(endpoints) > 1 else ''} {','.join(map(str, endpoints))}"
        )
        changes = []
        if fault.latency is not None:
            changes.append(f"latency {fault.latency}")
        if fault.error_p is not None:
            changes.append(f"errors {fault.error_p:g}")
        marks.append({"at_s": fault.at_ns / 1e9, "label": f"{where}: {', '.join(changes)}"})
    return marks


def planned_end_ns(scenario: Scenario, start_ns: int) -> int | None:
    """When the last request's deadline falls (None: a closed loop ended by a count)."""
    shape, timeout_ns = scenario.load.shape, scenario.load.timeout_ns
    if scenario.load.closed:
        return None if shape.duration_ns is None else start_ns + shape.duration_ns + timeout_ns
    last = 0
    for offsets in intended_offsets(shape):
        last = int(offsets[-1])
    return start_ns + last + timeout_ns
