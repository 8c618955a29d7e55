"""Launching the reference services a scenario asks for, and always tearing them down.

Where they run: on nodes offering the ``targets`` custom resource when the
cluster has any (through a ``ServiceHost`` actor there, so the load and the
services under test do not share cores), otherwise on the driver's node as its
child processes. Either way they bind their node's Ray address (127.0.0.1 on
an embedded cluster), so every generator can reach them.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import ray
import requests
import yaml

from cluster import launch
from cluster.plan import fault_marks, target_requests
from cluster.scenario import Scenario, Target
from targets.spec import format_error_spec, format_latency_spec
from workers.template import RequestTemplate

TARGETS_RESOURCE = "targets"


def node_address(node_id: str) -> str:
    """The address other nodes reach node ``node_id`` at."""
    for node in ray.nodes():
        if node["NodeID"] == node_id:
            return node["NodeManagerAddress"]
    raise RuntimeError(f"node {node_id} is not in the cluster's node table")


class LocalHost:
    """Runs services as child processes of this process, bound to this node's address."""

    def __init__(self) -> None:
        self.node = ray.get_runtime_context().get_node_id()
        self.address = node_address(self.node)
        self._services: list[launch.Service] = []
        self._files = tempfile.mkdtemp(prefix="blastradius-services-")

    def start(self, kind: str, args: list[str], faults_yaml: str | None = None) -> str:
        """Start one service; its URL."""
        if faults_yaml is not None:
            faults = Path(self._files) / f"faults-{len(self._services)}.yaml"
            faults.write_text(faults_yaml)
            args = [*args, "--faults", str(faults)]
        service = launch.start(kind, [*args, "--host", self.address])
        self._services.append(service)
        return service.url

    def stop_one(self, url: str) -> None:
        """Stop the service at ``url`` (if it is still running)."""
        for service in [s for s in self._services if s.url == url]:
            self._services.remove(service)
            service.stop()

    def stop(self) -> None:
        """Stop every service started here, the last started first."""
        while self._services:
            self._services.pop().stop()
        shutil.rmtree(self._files, ignore_errors=True)


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class ServiceHost:
    """A ``LocalHost`` on a node offering the ``targets`` resource."""

    def __init__(self) -> None:
        self.host = LocalHost()

    def node(self) -> str:
        """The node the services run on."""
        return self.host.node

    def start(self, kind: str, args: list[str], faults_yaml: str | None = None) -> str:
        """Start one service there; its URL."""
        return self.host.start(kind, args, faults_yaml)

    def stop_one(self, url: str) -> None:
        """Stop the service at ``url`` there."""
        self.host.stop_one(url)

    def stop(self) -> None:
        """Stop every service started there."""
        self.host.stop()


class _RemoteHost:
    def __init__(self, actor: ray.actor.ActorHandle) -> None:
        self.actor = actor
        self.node = ray.get(actor.node.remote())

    def start(self, kind: str, args: list[str], faults_yaml: str | None = None) -> str:
        try:
            return ray.get(self.actor.start.remote(kind, args, faults_yaml))
        except ray.exceptions.RayTaskError as exc:
            raise launch.LaunchError(str(exc.cause)) from None

    def stop_one(self, url: str) -> None:
        ray.get(self.actor.stop_one.remote(url), timeout=60)

    def stop(self) -> None:
        try:
            ray.get(self.actor.stop.remote(), timeout=60)
        finally:
            ray.kill(self.actor)


def open_host(stack: ExitStack) -> LocalHost | _RemoteHost:
    """Where services will run, registered on ``stack`` to be stopped."""
    has_targets = any(
        n["Alive"] and n["Resources"].get(TARGETS_RESOURCE, 0) > 0 for n in ray.nodes()
    )
    if has_targets:
        host = _RemoteHost(ServiceHost.options(resources={TARGETS_RESOURCE: 0.001}).remote())
    else:
        host = LocalHost()
    stack.callback(host.stop)
    return host


def anchor_faults(dependency_url: str, origin_ns: int) -> None:
    """Make the launched dependency's fault times count from ``origin_ns`` (epoch ns)."""
    try:
        answer = requests.post(
            f"{dependency_url}/clock", params={"origin_ns": str(origin_ns)}, timeout=10
        )
        answer.raise_for_status()
    except requests.RequestException as exc:
        raise launch.LaunchError(
            f"dependency {dependency_url}: cannot set its clock: {exc}"
        ) from None


@dataclass
class Launched:
    """The services a run started: the requests each target's generators send, a
    description for the manifest, and where they run."""

    requests: dict[str, tuple[RequestTemplate, ...]]
    info: dict
    host: LocalHost | _RemoteHost | None = None
    targets: dict[str, str] = field(default_factory=dict)  # launched target -> its URL
    dependency_url: str | None = None  # a launched dependency's
    faults: list[dict] = field(default_factory=list)  # its fault schedule, as plot marks

    def anchor_faults(self, origin_ns: int) -> list[dict]:
        """Make a launched dependency's fault times count from ``origin_ns`` (a target's
        load start); the fault marks, or [] when there is no schedule to anchor."""
        if not self.faults or self.dependency_url is None:
            return []
        anchor_faults(self.dependency_url, origin_ns)
        return self.faults

    def retire(self, target: str) -> bool:
        """Stop a launched target once its load is over; whether there was one to stop.

        Targets run one after another; a blocking target left running keeps its
        stuck threads and its queue, and would take CPU from the next one's run.
        """
        url = self.targets.pop(target, None)
        if url is None or self.host is None:
            return False
        self.host.stop_one(url)
        return True


def launch_services(scenario: Scenario, stack: ExitStack, log) -> Launched:
    """Start the dependency and the launched targets (stopped when ``stack`` closes)."""
    dependency = scenario.dependency
    needed = any(t.launched for t in scenario.targets)
    if not needed:
        endpoints = 0 if dependency is None else dependency.endpoints
        return Launched({t.name: target_requests(t, None, endpoints) for t in scenario.targets}, {})
    host = open_host(stack)
    launched = Launched({}, {"node": host.node, "urls": {}}, host)
    dependency_url = dependency.url
    if dependency.launched:
        args = ["--latency", format_latency_spec(dependency.latencies)]
        if dependency.errors is not None:
            args += ["--errors", format_error_spec(dependency.errors)]
        if dependency.seed is not None:
            args += ["--seed", str(dependency.seed)]
        faults = (scenario.source or {}).get("dependency", {}).get("faults")
        dependency_url = host.start("dependency", args, yaml.safe_dump(faults) if faults else None)
        launched.info["urls"]["dependency"] = launched.dependency_url = dependency_url
        launched.faults = fault_marks(scenario)
        log(f"dependency  {dependency_url}  ({format_latency_spec(dependency.latencies)})")
    for target in scenario.targets:
        target_url = None
        if target.launched:
            target_url = host.start(target.kind, _target_args(target, dependency_url))
            launched.info["urls"][target.name] = launched.targets[target.name] = target_url
            log(f"{target.name:<11} {target_url}  ({_describe(target)})")
        launched.requests[target.name] = target_requests(target, target_url, dependency.endpoints)
    return launched


def _target_args(target: Target, dependency_url: str) -> list[str]:
    args = ["--dependency", dependency_url]
    if target.kind == "blocking":
        args += ["--threads", str(target.threads)]
    else:
        args += ["--max-connections", str(target.max_connections)]
    if target.dependency_timeout_s is not None:
        args += ["--dependency-timeout", f"{target.dependency_timeout_s}s"]
    return args


def _describe(target: Target) -> str:
    size = (
        f"{target.threads} threads"
        if target.kind == "blocking"
        else f"max {target.max_connections or 'unlimited'} connections"
    )
    timeout = (
        f", dependency timeout {target.dependency_timeout_s:g}s"
        if target.dependency_timeout_s
        else ""
    )
    return f"{target.kind}, {size}{timeout}"
