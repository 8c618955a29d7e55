"""The Ray driver: a scenario becomes a run directory of shards and a manifest.

Order of a run: join Ray (``joining.py``: embedded unless an address is given), build
the run plan once (``plan.py``), create the run directory and ``run.json``, start the
plan's services, then for each target one after another: place the generators
(``placement.py``), start them together, follow them to their end (``watch.py``:
progress once a second, lost generators recorded, Ctrl-C stops them all), and tear
everything down whatever happens. Nothing goes back to the scenario: plan, execute,
manifest. SIGTERM stops a run as Ctrl-C does.

Batches come back through a ``ShardCollector`` on the driver's node, which writes them
as they arrive; with an ``--out`` URI (shared storage), or from ``DIRECT_WRITE_AT``
generators on a cluster of one node, generators write their shards directly. A
target's totals are its generators' summaries, and for a generator that never returned
one, its rows on disk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from blastradius.cluster import launch, placement
from blastradius.cluster.abort import Guard
from blastradius.cluster.joining import RunInputError, connect, first_line, metrics_url
from blastradius.cluster.manifest import (
    Manifest,
    iso,
    make_run_dir,
    new_run_id,
    remove_run_dir,
    versions,
)
from blastradius.cluster.plan import RunPlan, Step, build_plan, generator_count
from blastradius.cluster.scenario import Scenario
from blastradius.cluster.services import Services, start_services
from blastradius.cluster.status import target_status
from blastradius.cluster.watch import Watch
from blastradius.workers.actor import GeneratorActor, ShardCollector, ToCollector, ToStorage
from blastradius.workers.layout import is_uri, resolve, shards
from blastradius.workers.run_record import (
    GeneratorEnd,
    GeneratorState,
    RayInfo,
    RunRecord,
    RunStatus,
    TargetBlock,
    Totals,
)
from blastradius.workers.template import redact_url

__all__ = ["Outcome", "RunInputError", "run"]

Log = Callable[[str], None]
START_DELAY_S = 2.0  # from the generators being ready to their common start time
READY_TIMEOUT_S = 120.0
COUNTED = ["worker", "ok", "error"]  # the columns a generator's rows are counted from
# Generators from which one collector is near what it writes: 32 at 10,000 rows/s each
# kept it at 97% with writes near a second on 2 cores (BENCHMARKS.md); half that.
DIRECT_WRITE_AT = 16


class _GeneratorFailed(Exception):
    """A generator raised (its output failed, most likely): the run stops, ``failed``."""


@dataclass
class Outcome:
    """How a run ended: its directory and status."""

    run_dir: str
    status: RunStatus
    totals: dict[str, Totals] = field(default_factory=dict)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM (a pod deleted, ``ray job stop``, ``timeout``) stops a run as Ctrl-C does:
    load stopped, batches flushed, services stopped, status ``interrupted``.

    Installed after ``ray.init``, whose own handler exits at once and would leave the
    run recorded as if it had completed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    scenario: Scenario,
    out: str,
    address: str | None,
    log: Log,
    progress: Log | None = None,
    metrics_port: int | None = None,
) -> Outcome:
    """Run a scenario on Ray; returns where its rows are and how it ended.

    ``log`` takes event lines, ``progress`` the once-a-second lines (default: ``log``).
    ``metrics_port``: the embedded cluster's Prometheus endpoint (default a free port).
    """
    embedded = connect(address, metrics_port)
    try:
        with _signals_interrupt():
            plan, manifest = _open_run(scenario, out, address, embedded)
            if embedded:  # after the input checks: bad input prints only its error
                log(f"metrics: {metrics_url()}")
            return _Execution(plan, manifest.run_dir, manifest, log, progress or log).run()
    finally:
        ray.shutdown()  # the connection this run made (and an embedded cluster with it)


def _open_run(
    scenario: Scenario, out: str, address: str | None, embedded: bool
) -> tuple[RunPlan, Manifest]:
    """The run plan, and the run directory with its first ``run.json`` (RunInputError
    when ``out`` cannot be written: nothing is left behind)."""
    slots, slot = placement.free_slots()
    plan = build_plan(scenario, generator_count(scenario, slots, embedded))
    if plan.generators > slots:
        where = "the embedded cluster (this machine's cores)" if embedded else "the cluster"
        raise RunInputError(
            f"generators: {plan.generators} need {slot} each; {where} has {int(slots)} free"
        )
    run_id = new_run_id(scenario.name)
    try:
        run_dir = make_run_dir(out, run_id)
    except OSError as exc:
        raise RunInputError(f"--out {out}: cannot write there: {exc.strerror or exc}") from None
    nodes = len([n for n in ray.nodes() if n["Alive"]])
    record = RunRecord(
        run_id,
        scenario=scenario.source or {},
        ray=RayInfo(embedded, address, plan.generators, nodes),
        versions=versions(),
        objectives={s.name: s.objectives for s in plan.steps if s.objectives},
    )
    manifest = Manifest(run_dir, record)
    try:
        manifest.write()
    except OSError as exc:
        remove_run_dir(run_dir)
        raise RunInputError(f"--out {out}: cannot write there: {exc}") from None
    return plan, manifest


@dataclass
class _Execution:
    """One run plan being executed: services, then each target's load in turn; what
    happens is recorded in the manifest as it happens."""

    plan: RunPlan
    run_dir: str
    manifest: Manifest
    log: Log
    progress: Log

    def run(self) -> Outcome:
        status = RunStatus.COMPLETED
        totals: dict[str, Totals] = {}
        with ExitStack() as stack:
            try:
                services = start_services(self.plan, stack, self.log)
                self.manifest.update(services=services.info)
                output = _output(self.run_dir, self.plan.generators, stack, self.log)
                for step in self.plan.steps:
                    calls_before = services.dependency_calls()
                    states = self._target(step, services, output)
                    if services.retire(step):
                        self.log(f"{step.name}: load over; service stopped")
                    calls_after = services.dependency_calls()
                    if calls_before is not None and calls_after is not None:
                        calls = calls_after - calls_before
                        self.manifest.update_target(step.name, dependency_calls=calls)
                    block = self.manifest.target(step.name)
                    totals[step.name] = _totals(self.run_dir, step.name, block)
                    ended = target_status(states)
                    if ended == RunStatus.FAILED:
                        raise _GeneratorFailed(self._failure(step.name))
                    if ended == RunStatus.PARTIAL:
                        status = RunStatus.PARTIAL
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see _signals_interrupt)
                status = RunStatus.INTERRUPTED
            except (launch.LaunchError, _GeneratorFailed) as exc:
                self.log(f"error: {exc}")
                self.manifest.update(error=str(exc))
                status = RunStatus.FAILED
            except Exception as exc:  # whatever broke, the run says so: never "completed"
                reason = f"{type(exc).__name__}: {first_line(exc)}"
                self.log(f"error: the run broke: {reason}")
                self.manifest.update(error=reason)
                status = RunStatus.FAILED
            finally:
                self.manifest.update(totals=totals)
                try:
                    self.manifest.finish(status)
                except OSError as exc:  # the output went away or filled up: say so, once
                    self.log(f"error: cannot write {self.run_dir}/run.json: {first_line(exc)}")
                    status = RunStatus.FAILED
        return Outcome(self.run_dir, status, totals)

    def _failure(self, target: str) -> str:
        """Why a target's run failed: its first failed generator's error, in one line."""
        block = self.manifest.target(target)
        failed = next(g for g in block.generators if g.state == GeneratorState.FAILED)
        return f"{target}: generator {failed.worker} failed: {failed.error}"

    def _target(
        self, step: Step, services: Services, output: ToCollector | ToStorage
    ) -> set[GeneratorState]:
        """Run one target's load; the states its generators ended in."""
        url = services.url(step)
        templates, journey = step.templates(url), step.journey(url)
        urls = tuple(redact_url(t.url) for t in templates)
        if journey is not None:  # its steps' URLs as the scenario has them, ${...} kept
            urls = tuple(redact_url(s.url.written) for s in journey.steps)
            data = self.plan.data(step)
            steps = tuple(s.name for s in journey.steps) or None  # a flow's are its own
            flow = journey.flow
            written = None if flow is None else f"{flow.filename}:{flow.function}"
            self.manifest.update_target(step.name, steps=steps, data=data, flow=written)
            if data is not None and data.sessions < data.arrivals:
                self.log(
                    f"{step.name}: its {data.rows} rows of unique test data end the load "
                    f"after {data.sessions} of {data.arrivals} sessions"
                )
        self.manifest.update_target(step.name, urls=urls)
        if step.service is None:
            tls = step.target.tls
            self.manifest.update_target(
                step.name,
                requests=tuple(t.redacted() for t in templates),
                tls=None if tls is None else tls.redacted(),
            )
        with ExitStack() as stack:
            options, where = placement.placement(self.plan.generators, stack)
            actor_class: Any = GeneratorActor  # Ray's actor classes have no type of their own
            actors = [actor_class.options(**o).remote() for o in options]
            for actor in actors:
                stack.callback(ray.kill, actor)
            nodes = ray.get([a.ready.remote() for a in actors], timeout=READY_TIMEOUT_S)
            start_ns = time.time_ns() + int(START_DELAY_S * 1e9)
            end_ns = self.plan.end_ns(start_ns, step)
            self.manifest.update_target(
                step.name,
                placement=where,
                start=iso(start_ns),
                start_ns=start_ns,
                planned_end=iso(end_ns),
                generators=tuple(GeneratorEnd(w, node) for w, node in enumerate(nodes)),
                faults=services.anchor_faults(start_ns),
            )
            proxies_before = services.proxy_stats()
            self.manifest.write()
            shares = self.plan.shares(step, url, start_ns)
            refs = [a.run.remote(p, output) for a, p in zip(actors, shares, strict=True)]
            logs = (self.log, self.progress)
            watch = Watch(step.name, actors, refs, self.manifest, logs, (start_ns, end_ns))
            if step.objectives is not None and step.objectives.abort:
                watch.guard = Guard(step.objectives, self.plan.planned_requests(step))
            try:
                watch.until_done()
            except KeyboardInterrupt:
                self.log(f"{step.name}: interrupted; stopping the generators")
                watch.stop()
                raise
            try:
                patterns = services.patterns(step, start_ns)
            except launch.LaunchError as exc:  # the load's rows stand without them
                self.log(f"{step.name}: patterns' events not recorded: {exc}")
            else:
                if patterns is not None:
                    self.manifest.update_target(step.name, patterns=patterns)
            if proxies_before:
                after = services.proxy_stats()
                proxies = {name: after[name].since(b) for name, b in proxies_before.items()}
                self.manifest.update_target(step.name, proxies=proxies)
        return {g.state for g in self.manifest.target(step.name).generators}


def _output(run_dir: str, generators: int, stack: ExitStack, log: Log) -> ToCollector | ToStorage:
    """Where batches go: straight to shared storage for a URI, else to a collector on
    this node with a writer per generator (each awaits its own write before the next,
    so none waits on another's). From ``DIRECT_WRITE_AT`` generators on, one collector
    is near what it can write (``benchmarks/control_plane.py``): on a cluster of one
    node the generators then write the run directory themselves; on several, a path
    only this node has cannot be, and the log says to give a URI."""
    if is_uri(run_dir):
        return ToStorage(run_dir)
    if generators >= DIRECT_WRITE_AT:
        nodes = sum(1 for node in ray.nodes() if node["Alive"])
        if nodes == 1:
            log(f"shards: written by the {generators} generators themselves (one node)")
            return ToStorage(os.path.abspath(run_dir))
        log(
            f"shards: {generators} generators on {nodes} nodes hand their rows to one "
            "collector, which may fall behind; --out with a URI every node can write "
            "(s3://, gs://, file:// on a shared volume) has them write it themselves"
        )
    here = ray.get_runtime_context().get_node_id()
    actor_class: Any = ShardCollector  # Ray's actor classes have no type of their own
    collector = actor_class.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
    ).remote(run_dir, writers=generators)
    stack.callback(ray.kill, collector)
    return ToCollector(collector)


def _totals(run_dir: str, target: str, block: TargetBlock) -> Totals:
    """A target's counts. A generator that returned its summary counts that: it returns
    only once its last rows are on disk. One that did not (lost, failed, or not heard
    from) counts the rows of its own that are on disk."""
    ended = [g for g in block.generators if g.rows is not None]
    unknown = [g.worker for g in block.generators if g.rows is None]
    on_disk = _on_disk(run_dir, target, unknown) if unknown else Totals()
    errors = dict(on_disk.errors)
    for g in ended:
        for kind, n in (g.errors or {}).items():
            errors[kind] = errors.get(kind, 0) + n
    return Totals(
        on_disk.requests + sum(g.rows or 0 for g in ended),
        on_disk.ok + sum(g.ok or 0 for g in ended),
        {kind: errors[kind] for kind in sorted(errors)},
    )


def _on_disk(run_dir: str, target: str, workers: list[int]) -> Totals:
    """The counts of ``workers``' rows of a target on disk."""
    filesystem, path = resolve(run_dir)
    paths = [p for name, p in shards(filesystem, path) if name == target]
    mine = pc.field("worker").isin(workers)
    try:
        table = pa.concat_tables(
            pq.read_table(p, filesystem=filesystem, columns=COUNTED, filters=mine) for p in paths
        )
    except (OSError, ValueError, pa.ArrowException):
        return Totals()
    ok = int(table["ok"].to_numpy().sum())
    errors = table["error"].to_pandas().value_counts().to_dict()
    return Totals(table.num_rows, ok, {str(k): int(v) for k, v in errors.items() if k and v})
