"""The run plan, pure: a scenario becomes, once, everything the driver executes.

A ``RunPlan`` holds the number of generators, the services to start (each as the
``blastradius serve`` command that starts it: the dependency, the launched targets,
the scenario's proxies), one ``Step`` per target in scenario order, and the fault
events of the dependency and the proxies as plot marks. The driver executes it and
records what happened; nothing goes back to the scenario document.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, replace

from blastradius.cluster.scenario import ClosedLoop, Proxy, Scenario, Target
from blastradius.targets.spec import format_latency_spec
from blastradius.workers.generator import Share
from blastradius.workers.journey import Journey, Text
from blastradius.workers.journey import Step as JourneyStep
from blastradius.workers.run_record import DataWritten, FaultMark, Objectives
from blastradius.workers.schedule import Schedule, intended_offsets
from blastradius.workers.template import RequestTemplate

EMBEDDED_MAX_GENERATORS = 4
CONFIG_ON_STDIN = ("--config", "-")  # the proxy and the dependency read their config there


@dataclass(frozen=True)
class ServiceLaunch:
    """A reference service to start: ``blastradius serve KIND ARGS``, with ``stdin`` (a
    configuration document, for ``--config -``) written to it; ``about`` describes it in
    one line for the log."""

    kind: str
    args: tuple[str, ...]
    about: str
    stdin: str | None = None
    name: str = ""  # a proxy's name
    port: int = 0  # a fixed port (0: a free one)


@dataclass(frozen=True)
class Step:
    """One target's part of the run: the target, for a launched one its service (to
    which the driver adds ``--dependency URL``) and the number of endpoints it calls,
    and its objectives (the scenario's, with the target's own over them)."""

    target: Target
    service: ServiceLaunch | None = None
    endpoints: int = 0
    objectives: Objectives | None = None

    @property
    def name(self) -> str:
        """The target's name."""
        return self.target.name

    def templates(self, url: str | None) -> tuple[RequestTemplate, ...]:
        """What the generators send: ``GET /call/0..n-1`` of a launched target at ``url``,
        or the target's own requests."""
        if self.service is None:
            return self.target.requests
        return tuple(RequestTemplate(f"{url}/call/{i}") for i in range(self.endpoints))

    def journey(self, url: str | None) -> Journey | None:
        """A session target's journey: its own steps, or, for a launched target taking
        sessions, ``session_calls`` calls each drawn from ``GET /call/0..n-1`` at ``url``
        (its steps are named ``call/i``, so a row's step is its endpoint)."""
        calls = self.target.session_calls
        if self.service is None or not calls:
            return self.target.journey
        urls = (f"{url}/call/{i}" for i in range(self.endpoints))
        steps = tuple(JourneyStep(f"call/{i}", Text((u,), (), u)) for i, u in enumerate(urls))
        return Journey(steps, draws=calls)

    @property
    def sessions(self) -> bool:
        """Whether this target's load arrives as sessions."""
        return self.target.journey is not None or bool(self.target.session_calls)


@dataclass(frozen=True)
class RunPlan:
    """Everything a run does, decided before anything starts."""

    scenario: Scenario
    generators: int
    steps: tuple[Step, ...]
    dependency: ServiceLaunch | None = None  # a launched dependency
    dependency_url: str | None = None  # a running one's
    fault_marks: tuple[FaultMark, ...] = ()  # the launched dependency's, then the proxies'
    proxies: tuple[ServiceLaunch, ...] = ()

    @property
    def launches(self) -> bool:
        """Whether the run starts any service."""
        return bool(self.proxies) or any(step.service is not None for step in self.steps)

    def shares(self, step: Step, url: str | None, start_ns: int) -> list[Share]:
        """One share per generator: the same schedule, interleaved ``generators`` ways, of
        a step's requests (its target at ``url``, when the run launched it)."""
        load = self.scenario.load
        journey = step.journey(url)
        templates = () if journey is not None else step.templates(url)
        return [
            Share(
                step.name,
                templates,
                self.shape(step),
                load.timeout_ns,
                worker=worker,
                workers=self.generators,
                start_ns=start_ns,
                max_in_flight=load.max_in_flight,
                connections=load.connections,
                tls=step.target.tls,
                seed=load.seed,
                journey=journey,
                http=step.target.http,
                streams=step.target.streams,
                deadline_header=step.target.patterns.deadline,
            )
            for worker in range(self.generators)
        ]

    def shape(self, step: Step) -> Schedule | ClosedLoop:
        """The load's shape for a step's target: the scenario's, but no more sessions than
        a session target has rows of unique test data."""
        shape, journey = self.scenario.load.shape, step.target.journey
        if isinstance(shape, ClosedLoop) or journey is None:
            return shape
        rows = journey.sessions(sys.maxsize)
        if rows == sys.maxsize or (shape.max_requests or rows + 1) <= rows:
            return shape
        return replace(shape, max_requests=rows)

    def data(self, step: Step) -> DataWritten | None:
        """A session target's test data as run.json has it (None: it has none)."""
        journey, shape = step.target.journey, self.scenario.load.shape
        if journey is None or journey.data is None or isinstance(shape, ClosedLoop):
            return None
        arrivals = sum(len(offsets) for offsets in intended_offsets(shape))
        data = journey.data
        return DataWritten(data.size, data.pick, arrivals, journey.sessions(arrivals))

    def planned_requests(self, step: Step) -> int | None:
        """A target's request count (exact: Poisson times are seeded), None for a closed
        loop; for a session target, its rows: a row per step each session sends (on
        average, where repeats or loops are drawn per session; None for a python flow)."""
        shape = self.shape(step)
        if isinstance(shape, ClosedLoop):
            return None
        journey = step.target.journey
        if journey is not None and journey.flow is not None:
            return None  # a python flow's rows are its own to decide
        arrivals = sum(len(offsets) for offsets in intended_offsets(shape))
        if step.target.session_calls:
            return arrivals * step.target.session_calls
        return arrivals if journey is None else round(arrivals * journey.mean_rows())

    def end_ns(self, start_ns: int, step: Step) -> int | None:
        """When the last request's deadline falls (None: a closed loop ended by a count,
        or sessions with no session timeout)."""
        load, journey = self.scenario.load, step.target.journey
        shape, timeout_ns = self.shape(step), load.timeout_ns
        if isinstance(shape, ClosedLoop):
            return None if shape.duration_ns is None else start_ns + shape.duration_ns + timeout_ns
        if step.sessions:
            if journey is None or journey.timeout_ns is None:
                return None
            timeout_ns += journey.timeout_ns  # its last step starts by then
        last = 0
        for offsets in intended_offsets(shape):
            last = int(offsets[-1])
        return start_ns + last + timeout_ns


def generator_count(scenario: Scenario, free_slots: float, embedded: bool) -> int:
    """The scenario's count, or one per free slot: a free CPU, or a free unit of the
    ``loadgen`` resource on a cluster with generator nodes (at most 4 on an embedded
    cluster)."""
    if scenario.generators is not None:
        return scenario.generators
    count = max(1, int(free_slots))
    return min(count, EMBEDDED_MAX_GENERATORS) if embedded else count


def build_plan(scenario: Scenario, generators: int) -> RunPlan:
    """The run plan of a scenario with ``generators`` generators."""
    plan = _build_plan(scenario, generators)
    if not scenario.proxies:
        return plan
    launches = tuple(_proxy_service(proxy) for proxy in scenario.proxies)
    marks = plan.fault_marks + tuple(
        replace(mark, label=f"{proxy.name}: {mark.label}")
        for proxy in scenario.proxies
        for mark in _marks(proxy.config.faults)
    )
    return replace(plan, proxies=launches, fault_marks=marks)


def _proxy_service(proxy: Proxy) -> ServiceLaunch:
    about = f"proxy to {proxy.config.upstream}"
    document = json.dumps(proxy.config.to_json())
    return ServiceLaunch("proxy", CONFIG_ON_STDIN, about, document, proxy.name, proxy.port)


def _build_plan(scenario: Scenario, generators: int) -> RunPlan:
    dependency = scenario.dependency
    launches = any(t.launched for t in scenario.targets)
    endpoints = 0 if dependency is None else dependency.endpoints
    objectives = scenario.objectives()
    steps = tuple(
        Step(
            t,
            _target_service(t) if t.launched else None,
            endpoints if t.launched else 0,
            objectives.get(t.name),
        )
        for t in scenario.targets
    )
    if not launches or dependency is None:
        return RunPlan(scenario, generators, steps)
    if not dependency.launched:
        return RunPlan(scenario, generators, steps, dependency_url=dependency.url)
    config = dependency.config
    assert config is not None  # a launched dependency has one (parse_dependency)
    about = format_latency_spec(config.latencies)
    service = ServiceLaunch("dependency", CONFIG_ON_STDIN, about, json.dumps(config.to_json()))
    return RunPlan(scenario, generators, steps, service, None, dependency_fault_marks(scenario))


def _target_service(target: Target) -> ServiceLaunch:
    args = []
    if target.kind == "blocking":
        args += ["--threads", str(target.threads)]
        size = f"{target.threads} threads"
    else:
        args += ["--max-connections", str(target.max_connections)]
        size = f"max {target.max_connections or 'unlimited'} connections"
        if target.dependency_http == "2":
            args += ["--dependency-http2"]
            size += " over HTTP/2 (100 streams each)"
    about = f"{target.kind}, {size}"
    if target.dependency_timeout_s is not None:
        args += ["--dependency-timeout", f"{target.dependency_timeout_s}s"]
        about += f", dependency timeout {target.dependency_timeout_s:g}s"
    if target.patterns:
        args += ["--patterns", json.dumps(target.patterns.to_json())]
        about += f"; {target.patterns.about()}"
    return ServiceLaunch(target.kind or "", tuple(args), about)


def dependency_fault_marks(scenario: Scenario) -> tuple[FaultMark, ...]:
    """The dependency's fault events as plot marks: seconds from a target's load start."""
    if scenario.dependency is None:
        return ()
    return _marks(scenario.dependency.faults)


def _marks(faults) -> tuple[FaultMark, ...]:
    marks = []
    for fault in faults:
        endpoints = fault.endpoints
        where = (
            "all endpoints"
            if endpoints is None
            else f"endpoint{'s' if len(endpoints) > 1 else ''} {','.join(map(str, endpoints))}"
        )
        changes = [
            f"{key} {value}B/s"
            if key == "bandwidth"
            else f"{key} {value if key == 'latency' else format(value, 'g')}"
            for key, value in fault.changes()
        ]
        marks.append(FaultMark(fault.at_ns / 1e9, f"{where}: {', '.join(changes)}"))
    return tuple(marks)
