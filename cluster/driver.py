"""The Ray driver: a scenario becomes a run directory of shards and a manifest.

Order of a run: connect to Ray (embedded unless an address is given), build
the run plan once (``plan.py``), create the run directory and ``run.json``,
start the plan's services, then for each target one after another: place the
generators, start them together, watch them (progress once a second, lost
generators recorded, Ctrl-C stops them all), and tear everything down
whatever happens. Nothing goes back to the scenario: plan, execute, manifest.

Placement: a STRICT_SPREAD placement group when enough nodes have a CPU for
one generator each, otherwise Ray's SPREAD strategy. When some node offers
the ``loadgen`` resource, generators take a unit of it as well, so they run on
those nodes only. SIGTERM stops a run as Ctrl-C does. Batches come back through
a ``ShardCollector`` on the driver's node, which writes them as they arrive;
with an ``--out`` URI (shared storage) generators write their shards directly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from blastradius.analysis.table import error_counts
from blastradius.cluster import launch
from blastradius.cluster.abort import Guard
from blastradius.cluster.manifest import Manifest, iso, make_run_dir, new_run_id, remove_run_dir
from blastradius.cluster.plan import RunPlan, Step, build_plan, generator_count
from blastradius.cluster.scenario import Scenario
from blastradius.cluster.services import Services, proxy_counts, start_services
from blastradius.cluster.status import GeneratorState, RunStatus, missing_window, target_status
from blastradius.workers.actor import GeneratorActor, ShardCollector, ToCollector, ToStorage
from blastradius.workers.layout import is_uri, resolve, shards
from blastradius.workers.template import redact_url

Log = Callable[[str], None]
START_DELAY_S = 2.0  # from the generators being ready to their common start time
READY_TIMEOUT_S = 120.0
PLACEMENT_TIMEOUT_S = 10.0
LOADGEN_RESOURCE = "loadgen"  # offered by generator nodes (k8s/: the loadgen worker group)


class RunInputError(Exception):
    """Bad input found before anything was started (exit 2): the message is one line."""


class _GeneratorFailed(Exception):
    """A generator raised (its output failed, most likely): the run stops, ``failed``."""


@dataclass
class Outcome:
    """How a run ended: its directory and status."""

    run_dir: str
    status: RunStatus
    totals: dict[str, dict] = field(default_factory=dict)


def first_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's message in one line (its type's name when it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


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


def connect(address: str | None, metrics_port: int | None = None) -> bool:
    """Join the cluster at ``address``, or start an embedded one (as many CPUs as this
    machine has cores, its Prometheus endpoint on ``metrics_port``, default a free
    one); True when embedded."""
    if address is None:
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            _metrics_export_port=metrics_port or None,
            logging_level="ERROR",
        )
        return True
    if not _reachable(address):
        raise RunInputError(
            f"--address {address}: cannot join a Ray cluster: nothing answers there"
        )
    with _core_log() as core_log:
        try:
            ray.init(address=address, log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            error = exc
        else:
            return False
    if "Unauthenticated" in "".join(core_log):
        reason = "it refused this process's token (RAY_AUTH_MODE, RAY_AUTH_TOKEN)"
    else:
        reason = first_line(error)
    raise RunInputError(f"--address {address}: cannot join a Ray cluster: {reason}")


@contextlib.contextmanager
def _core_log() -> Iterator[list[str]]:
    """While joining: what Ray's C++ core writes to stderr (a refused token, retries)
    goes to a file instead, and into the list once the block ends; the CLI's errors
    stay one line. Ray's own log files keep it all."""
    text: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text.append(captured.read().decode(errors="replace"))


def _reachable(address: str) -> bool:
    """Whether a ``host:port`` (or ``ray://host:port``) address accepts a connection.

    Ray itself retries an unreachable cluster for minutes; other forms (``auto``) are
    left to Ray.
    """
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return True
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError:
        return False
    return True


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


def metrics_url() -> str:
    """Where this (embedded) node serves Prometheus metrics: Ray's and blastradius_*."""
    here = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == here)
    return f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"


def _open_run(
    scenario: Scenario, out: str, address: str | None, embedded: bool
) -> tuple[RunPlan, Manifest]:
    """The run plan, and the run directory with its first ``run.json`` (RunInputError
    when ``out`` cannot be written: nothing is left behind)."""
    slots, slot = _free_slots()
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
    ray_info = {
        "embedded": embedded,
        "address": address,
        "generators": plan.generators,
        "nodes": len([n for n in ray.nodes() if n["Alive"]]),
    }
    manifest = Manifest(run_dir, run_id, scenario.source or {}, ray_info)
    objectives = {step.name: step.objectives for step in plan.steps if step.objectives}
    if objectives:
        manifest.data["objectives"] = {name: o.to_json() for name, o in objectives.items()}
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
        totals: dict[str, dict] = {}
        with ExitStack() as stack:
            try:
                services = start_services(self.plan, stack, self.log)
                self.manifest.data["services"] = services.info
                output = _output(self.run_dir, self.plan.generators, stack)
                for step in self.plan.steps:
                    states = self._target(step, services, output)
                    if services.retire(step):
                        self.log(f"{step.name}: load over; service stopped")
                    totals[step.name] = _totals(self.run_dir, step.name)
                    ended = target_status(states)
                    if ended == RunStatus.FAILED:
                        raise _GeneratorFailed(self._failure(step.name))
                    if ended == RunStatus.PARTIAL:
                        status = RunStatus.PARTIAL
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (see _signals_interrupt)
                status = RunStatus.INTERRUPTED
            except (launch.LaunchError, _GeneratorFailed) as exc:
                self.log(f"error: {exc}")
                self.manifest.data["error"] = str(exc)
                status = RunStatus.FAILED
            except Exception as exc:  # whatever broke, the run says so: never "completed"
                reason = f"{type(exc).__name__}: {first_line(exc)}"
                self.log(f"error: the run broke: {reason}")
                self.manifest.data["error"] = reason
                status = RunStatus.FAILED
            finally:
                self.manifest.data["totals"] = totals
                try:
                    self.manifest.finish(status)
                except OSError as exc:  # the output went away or filled up: say so, once
                    self.log(f"error: cannot write {self.run_dir}/run.json: {first_line(exc)}")
                    status = RunStatus.FAILED
        return Outcome(self.run_dir, status, totals)

    def _failure(self, target: str) -> str:
        """Why a target's run failed: its first failed generator's error, in one line."""
        block = self.manifest.target(target)
        failed = next(g for g in block["generators"] if g["state"] == GeneratorState.FAILED)
        return f"{target}: generator {failed['worker']} failed: {failed['error']}"

    def _target(
        self, step: Step, services: Services, output: ToCollector | ToStorage
    ) -> set[GeneratorState]:
        """Run one target's load; the states its generators ended in."""
        requests = services.requests(step)
        block = self.manifest.target(step.name)
        block["urls"] = [redact_url(t.url) for t in requests]
        if step.service is None:
            block["requests"] = [t.redacted() for t in requests]
            tls = step.target.tls
            block["tls"] = None if tls is None else tls.redacted()
        with ExitStack() as stack:
            options, placement = _placement(self.plan.generators, stack)
            actors = [GeneratorActor.options(**o).remote() for o in options]
            for actor in actors:
                stack.callback(ray.kill, actor)
            nodes = ray.get([a.ready.remote() for a in actors], timeout=READY_TIMEOUT_S)
            start_ns = time.time_ns() + int(START_DELAY_S * 1e9)
            end_ns = self.plan.end_ns(start_ns)
            block.update(
                {
                    "placement": placement,
                    "start": iso(start_ns),
                    "start_ns": start_ns,
                    "planned_end": iso(end_ns),
                    "generators": [
                        {"worker": w, "node": node, "state": GeneratorState.RUNNING}
                        for w, node in enumerate(nodes)
                    ],
                }
            )
            marks = services.anchor_faults(start_ns)
            if marks:
                block["faults"] = marks
            proxies_before = services.proxy_stats()
            self.manifest.write()
            plans = self.plan.generator_plans(step, requests, start_ns)
            refs = [a.run.remote(p, output) for a, p in zip(actors, plans, strict=True)]
            watch = _Watch(step.name, actors, refs, block, self, (start_ns, end_ns))
            if step.objectives is not None and step.objectives.abort:
                watch.guard = Guard(step.objectives, self.plan.planned_requests())
            try:
                watch.until_done()
            except KeyboardInterrupt:
                self.log(f"{step.name}: interrupted; stopping the generators")
                watch.stop()
                raise
            if proxies_before:
                after = services.proxy_stats()
                block["proxies"] = {
                    name: proxy_counts(before, after[name])
                    for name, before in proxies_before.items()
                }
        return {g["state"] for g in block["generators"]}


def _output(run_dir: str, generators: int, stack: ExitStack) -> ToCollector | ToStorage:
    """Where batches go: straight to shared storage for a URI, else to a collector on
    this node with a writer per generator (each awaits its own write before the next,
    so none waits on another's)."""
    if is_uri(run_dir):
        return ToStorage(run_dir)
    here = ray.get_runtime_context().get_node_id()
    collector = ShardCollector.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)
    ).remote(run_dir, writers=generators)
    stack.callback(ray.kill, collector)
    return ToCollector(collector)


def _free_slots() -> tuple[int, str]:
    """How many generators the cluster can place now, and what each takes."""
    free = ray.available_resources()
    cpus = int(free.get("CPU", 0))
    if _loadgen_cluster():
        return min(int(free.get(LOADGEN_RESOURCE, 0)), cpus), "a CPU and a unit of loadgen"
    return cpus, "a CPU"


def _loadgen_cluster() -> bool:
    """Whether some node offers the ``loadgen`` resource: then generators run only there."""
    return any(n["Alive"] and n["Resources"].get(LOADGEN_RESOURCE, 0) >= 1 for n in ray.nodes())


def _placement(generators: int, stack: ExitStack) -> tuple[list[dict], str]:
    """Actor options, one per generator, and the name of the placement used.

    Each generator takes a CPU, and a unit of ``loadgen`` where nodes offer it (so on
    a cluster with generator nodes, nothing else hosts one).
    """
    loadgen = _loadgen_cluster()
    need = {"CPU": 1, LOADGEN_RESOURCE: 1} if loadgen else {"CPU": 1}
    extra = {"resources": {LOADGEN_RESOURCE: 1}} if loadgen else {}
    nodes = [
        n
        for n in ray.nodes()
        if n["Alive"] and all(n["Resources"].get(k, 0) >= v for k, v in need.items())
    ]
    if generators > 1 and len(nodes) >= generators:
        group = placement_group([need] * generators, strategy="STRICT_SPREAD")
        if group.wait(timeout_seconds=PLACEMENT_TIMEOUT_S):
            stack.callback(remove_placement_group, group)
            return [
                {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, i), **extra}
                for i in range(generators)
            ], "STRICT_SPREAD"
        remove_placement_group(group)
    return [{"scheduling_strategy": "SPREAD", **extra}] * generators, "SPREAD"


class _Watch:
    """Follows one target's generators to their end: progress, summaries, losses."""

    def __init__(
        self,
        name: str,
        actors: list,
        refs: list,
        block: dict,
        execution: _Execution,
        window_ns: tuple[int, int | None],
    ) -> None:
        self.name, self.actors, self.block = name, actors, block
        self.manifest, self.log, self.progress = (
            execution.manifest,
            execution.log,
            execution.progress,
        )
        self.start_ns, self.end_ns = window_ns
        self.pending = {ref: worker for worker, ref in enumerate(refs)}
        # Each generator's last counts, kept once it ends: totals never go backwards.
        self.latest: dict[int, dict] = {}
        self.last_sent, self.last_time = 0, time.monotonic()
        self.guard: Guard | None = None  # slo abort: set when the objectives ask for it

    def until_done(self, interval_s: float = 1.0) -> None:
        while self.pending:
            done, _ = ray.wait(
                list(self.pending), num_returns=len(self.pending), timeout=interval_s
            )
            for ref in done:
                self._ended(self.pending.pop(ref), ref)
            if self.pending:
                self._progress()

    def stop(self) -> None:
        """Ask every running generator to stop, then wait for them (bounded)."""
        for worker in self.pending.values():
            with contextlib.suppress(ray.exceptions.RayError):
                self.actors[worker].stop.remote()
        deadline = time.monotonic() + 30
        while self.pending and time.monotonic() < deadline:
            done, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=1.0)
            for ref in done:
                self._ended(self.pending.pop(ref), ref, state=GeneratorState.STOPPED)

    def _ended(
        self, worker: int, ref: ray.ObjectRef, state: GeneratorState = GeneratorState.COMPLETED
    ) -> None:
        entry = self.block["generators"][worker]
        try:
            summary = ray.get(ref)
        except ray.exceptions.RayError as exc:
            ended_ns = time.time_ns()
            missing_from, missing_to = missing_window(self.start_ns, ended_ns, self.end_ns)
            # RayTaskError: the generator raised (its output failed, say): it failed.
            # Anything else: its process or node died: it was lost.
            failed = isinstance(exc, ray.exceptions.RayTaskError)
            cause = exc.cause if failed and isinstance(exc.cause, BaseException) else exc
            error = f"{type(cause).__name__}: {first_line(cause)}" if failed else first_line(exc)
            entry.update(
                {
                    "state": GeneratorState.FAILED if failed else GeneratorState.LOST,
                    "lost_at": iso(ended_ns),
                    "lost_at_ns": ended_ns,
                    "error": error,
                    # Rows up to the last batch this generator handed over are on
                    # disk; its share of the schedule from then on is missing.
                    "missing": {"from": iso(missing_from), "to": iso(missing_to)},
                }
            )
            self.log(
                f"{self.name}: generator {worker} on node {entry['node'][:12]} "
                f"{'failed' if failed else 'was lost'} ({error[:120]})"
            )
        else:
            entry.update(
                {
                    "state": state,
                    "rows": summary["rows"],
                    "ok": summary["ok"],
                    "errors": summary["errors"],
                    "send_lag_p99_ms": summary["send_lag_p99_ms"],
                }
            )
            counts = {k: summary[k] for k in ("rows", "sent", "ok", "errors")}
            last = self.latest.get(worker, {"elapsed_s": 0.0})
            self.latest[worker] = {**last, **counts, "window": {"p99_ms": None}}
        self.manifest.write()

    def _progress(self) -> None:
        calls = {self.actors[w].progress.remote(): w for w in self.pending.values()}
        ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=0.5)
        for ref in ready:
            with contextlib.suppress(ray.exceptions.RayError):
                report = ray.get(ref)
                if report:
                    self.latest[calls[ref]] = report
        reports = list(self.latest.values())
        if any(r["sent"] for r in reports):
            line = progress_line(
                self.name, reports, self._rate(reports), len(self.pending), len(self.actors)
            )
            self.progress(line)
        if self.guard is not None and reports:
            self._guard(reports)

    def _guard(self, reports: list[dict]) -> None:
        """Stop the load if an objective can no longer be met (``slo: {abort: true}``)."""
        errors: dict[str, int] = {}
        for report in reports:
            for kind, n in report["errors"].items():
                errors[kind] = errors.get(kind, 0) + n
        now_ns = time.time_ns()
        reason = self.guard.observe(
            (now_ns - self.start_ns) / 1e9,
            sum(r["rows"] for r in reports),
            sum(r["ok"] for r in reports),
            errors,
        )
        if reason is None:
            return
        self.guard = None  # once
        self.log(f"{self.name}: stopping its load early: {reason}")
        self.block["aborted"] = {"at": iso(now_ns), "reason": reason}
        self.manifest.write()
        self.stop()

    def _rate(self, reports: list[dict]) -> float:
        sent, now = sum(r["sent"] for r in reports), time.monotonic()
        rate = (sent - self.last_sent) / max(now - self.last_time, 1e-9)
        self.last_sent, self.last_time = sent, now
        return max(rate, 0.0)


def progress_line(
    name: str, reports: list[dict], rate: float, running: int, generators: int
) -> str:
    """One progress line for a target from its generators' latest ``progress()`` reports
    (a generator that ended keeps its final counts, so totals never go backwards)."""
    rows = sum(r["rows"] for r in reports)
    ok = sum(r["ok"] for r in reports)
    errors: dict[str, int] = {}
    for report in reports:
        for kind, n in report["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    p99s = [r["window"]["p99_ms"] for r in reports if r["window"]["p99_ms"] is not None]
    elapsed = max(r["elapsed_s"] for r in reports)
    ok_text = f"{100 * ok / rows:5.1f}%" if rows else "    -"
    error_text = error_counts(errors)
    p99_text = f"{max(p99s):.0f}ms" if p99s else "-"
    return (
        f"{name}: {elapsed:5.1f}s  sent {sum(r['sent'] for r in reports):>8}  "
        f"ok {ok_text}  {rate:7.0f} req/s  p99(1s) {p99_text:>7}  errors {error_text}  "
        f"generators {running}/{generators}"
    )


def _totals(run_dir: str, target: str) -> dict:
    """Counts read back from the target's shards: what is on disk is what counts."""
    filesystem, path = resolve(run_dir)
    paths = [p for name, p in shards(filesystem, path) if name == target]
    try:
        table = pa.concat_tables(
            pq.read_table(p, filesystem=filesystem, columns=["ok", "error"]) for p in paths
        )
    except (OSError, ValueError, pa.ArrowException):
        return {"requests": 0, "ok": 0, "errors": {}}
    ok = int(table["ok"].to_numpy().sum())
    errors = table["error"].to_pandas().value_counts().to_dict()
    return {
        "requests": table.num_rows,
        "ok": ok,
        "errors": {str(k): int(v) for k, v in errors.items() if k and v},
    }
