"""Launching the reference services a scenario asks for, and always tearing them down.

Where they run: on nodes offering the ``targets`` custom resource when the
cluster has any (through a ``ServiceHost`` actor there, so the load and the
services under test do not share cores), otherwise on the driver's node as its
child processes. Either way they bind their node's Ray address (127.0.0.1 on
an embedded cluster), so every generator can reach them.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import ray
import requests

from blastradius.cluster import launch
from blastradius.cluster.plan import RunPlan, ServiceLaunch, Step
from blastradius.workers.run_record import (
    FaultMark,
    PatternEvent,
    PatternsWritten,
    ProxyCounts,
    ServicesInfo,
)

TARGETS_RESOURCE = "targets"
STATS_TIMEOUT_S = 60.0  # a launched target's pattern stats, read after its load


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

    def start(self, service: ServiceLaunch, extra: tuple[str, ...] = ()) -> str:
        """Start one service (``extra`` arguments appended); its URL."""
        args = [*service.args, *extra, "--host", self.address]
        started = launch.start(service.kind, args, service.stdin)
        self._services.append(started)
        return started.url

    def stop_one(self, url: str) -> None:
        """Stop the service at ``url`` (if it is still running)."""
        for service in [s for s in self._services if s.url == url]:
            self._services.remove(service)
            service.stop()

    def stop(self) -> None:
        """Stop every service started here, the last started first."""
        while self._services:
            self._services.pop().stop()


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class ServiceHost:
    """A ``LocalHost`` on a node offering the ``targets`` resource."""

    def __init__(self) -> None:
        self.host = LocalHost()

    def node(self) -> str:
        """The node the services run on."""
        return self.host.node

    def start(self, service: ServiceLaunch, extra: tuple[str, ...] = ()) -> str:
        """Start one service there; its URL."""
        return self.host.start(service, extra)

    def stop_one(self, url: str) -> None:
        """Stop the service at ``url`` there."""
        self.host.stop_one(url)

    def stop(self) -> None:
        """Stop every service started there."""
        self.host.stop()


class _RemoteHost:
    def __init__(self, actor: ray.actor.ActorHandle) -> None:
        self.actor = actor
        self.node = str(ray.get(actor.node.remote()))

    def start(self, service: ServiceLaunch, extra: tuple[str, ...] = ()) -> str:
        try:
            return str(ray.get(self.actor.start.remote(service, extra)))
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
    host: LocalHost | _RemoteHost
    if has_targets:
        actor_class: Any = ServiceHost  # Ray's actor classes have no type of their own
        host = _RemoteHost(actor_class.options(resources={TARGETS_RESOURCE: 0.001}).remote())
    else:
        host = LocalHost()
    stack.callback(host.stop)
    return host


def anchor_faults(url: str, origin_ns: int, what: str = "dependency") -> None:
    """Make a launched service's fault times count from ``origin_ns`` (epoch ns): the
    dependency's ``/clock``, or a proxy's (``url`` its control base)."""
    try:
        answer = requests.post(f"{url}/clock", params={"origin_ns": str(origin_ns)}, timeout=10)
        answer.raise_for_status()
    except requests.RequestException as exc:
        raise launch.LaunchError(f"{what} {url}: cannot set its clock: {exc}") from None


@dataclass
class Services:
    """The services a run started, where they run, and their URLs (for the manifest)."""

    plan: RunPlan
    host: LocalHost | _RemoteHost | None = None
    dependency_url: str | None = None
    urls: dict[str, str] = field(default_factory=dict)  # launched target -> its URL
    proxy_urls: dict[str, str] = field(default_factory=dict)  # proxy name -> its URL

    @property
    def info(self) -> ServicesInfo:
        """What ``run.json`` records of them."""
        if self.host is None:
            return ServicesInfo()
        urls = {}
        if self.plan.dependency is not None and self.dependency_url is not None:
            urls["dependency"] = self.dependency_url
        proxies = {f"proxy {name}": url for name, url in self.proxy_urls.items()}
        return ServicesInfo(self.host.node, {**urls, **proxies, **self.urls})

    def proxy_stats(self) -> dict[str, ProxyCounts]:
        """Each proxy's ``/_blastradius/stats`` now."""
        found = {}
        for name, url in self.proxy_urls.items():
            try:
                answer = requests.get(f"{url}/_blastradius/stats", timeout=10)
                answer.raise_for_status()
                found[name] = ProxyCounts.from_json(answer.json())
            except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
                raise launch.LaunchError(f"proxy {name} {url}: no stats: {exc}") from None
        return found

    def dependency_calls(self) -> int | None:
        """The calls the launched dependency has answered or is answering (its
        ``/stats``), or None: no dependency launched, or it could not say."""
        if self.plan.dependency is None or self.dependency_url is None or self.host is None:
            return None
        try:
            answer = requests.get(f"{self.dependency_url}/stats", timeout=10)
            answer.raise_for_status()
            return int(answer.json()["requests"])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None

    def patterns(self, step: Step, start_ns: int) -> PatternsWritten | None:
        """A launched target's pattern counts and events (times from ``start_ns``), read
        from its ``/stats`` and ``/events``; None when it has no patterns.

        A blocking target answers them once a thread is free: after its load, every
        thread stuck on a slow dependency call comes back within the call's timeout
        (60 s is allowed), or the patterns are left out of run.json.
        """
        url = self.urls.get(step.name)
        if url is None or not step.target.patterns.names():
            return None
        try:
            counts = requests.get(f"{url}/stats", timeout=STATS_TIMEOUT_S)
            counts.raise_for_status()
            events = requests.get(f"{url}/events", timeout=STATS_TIMEOUT_S)
            events.raise_for_status()
            return _patterns_written(counts.json()["patterns"], events.json(), start_ns)
        except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise launch.LaunchError(f"{step.name} {url}: no pattern stats: {exc}") from None

    def url(self, step: Step) -> str | None:
        """Where a step's launched target listens (None: the run did not launch it)."""
        return self.urls.get(step.name)

    def anchor_faults(self, origin_ns: int) -> tuple[FaultMark, ...]:
        """Make a launched dependency's fault times count from ``origin_ns`` (a target's
        load start); the fault marks, or none when there is no schedule to anchor."""
        for name, url in self.proxy_urls.items():
            anchor_faults(f"{url}/_blastradius", origin_ns, f"proxy {name}")
        if not self.plan.fault_marks:
            return ()
        if self.plan.dependency is not None and self.dependency_url is not None:
            anchor_faults(self.dependency_url, origin_ns)
        return tuple(self.plan.fault_marks)

    def retire(self, step: Step) -> bool:
        """Stop a launched target once its load is over; whether there was one to stop.

        Targets run one after another; a blocking target left running keeps its
        stuck threads and its queue, and would take CPU from the next one's run.
        """
        url = self.urls.pop(step.name, None)
        if url is None or self.host is None:
            return False
        self.host.stop_one(url)
        return True


def _patterns_written(
    counts: dict[str, Any], events: dict[str, Any], start_ns: int
) -> PatternsWritten:
    """A service's ``/stats`` patterns and ``/events`` (``targets/guards.py``: times in
    epoch ns) as run.json keeps them (s from the load start)."""

    def seconds(ns: Any) -> float:
        return (int(ns) - start_ns) / 1e9

    return PatternsWritten(
        {str(k): int(v) for k, v in counts.items()},
        tuple(
            PatternEvent(
                seconds(e["at_ns"]),
                str(e["pattern"]),
                str(e["event"]),
                int(e["count"]),
                None if e.get("until_ns") is None else seconds(e["until_ns"]),
                e.get("endpoint"),
                e.get("value"),
            )
            for e in events["events"]
        ),
        int(events["dropped"]),
    )


def start_services(plan: RunPlan, stack: ExitStack, log) -> Services:
    """Start the plan's dependency and launched targets (stopped when ``stack`` closes)."""
    services = Services(plan, dependency_url=plan.dependency_url)
    if not plan.launches:
        return services
    services.host = open_host(stack)
    for proxy in plan.proxies:
        url = services.host.start(proxy, ("--port", str(proxy.port)))
        services.proxy_urls[proxy.name] = url
        log(f"{'proxy ' + proxy.name:<11} {url}  ({proxy.about})")
    if plan.dependency is not None:
        services.dependency_url = services.host.start(plan.dependency)
        log(f"dependency  {services.dependency_url}  ({plan.dependency.about})")
    for step in plan.steps:
        if step.service is not None:
            assert services.dependency_url is not None  # a launched target has one (validated)
            url = services.host.start(step.service, ("--dependency", services.dependency_url))
            services.urls[step.name] = url
            log(f"{step.name:<11} {url}  ({step.service.about})")
    return services
