"""Where a target's generators run: how many the cluster can take, and on which nodes.

A STRICT_SPREAD placement group when enough nodes have a CPU for one generator each,
otherwise Ray's SPREAD strategy. When some node offers the ``loadgen`` resource,
generators take a unit of it as well, so they run on those nodes only.
"""

from __future__ import annotations

from contextlib import ExitStack

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

PLACEMENT_TIMEOUT_S = 10.0
LOADGEN_RESOURCE = "loadgen"  # offered by generator nodes (k8s/: the loadgen worker group)


def free_slots() -> tuple[int, str]:
    """How many generators the cluster can place now, and what each takes."""
    free = ray.available_resources()
    cpus = int(free.get("CPU", 0))
    if loadgen_cluster():
        return min(int(free.get(LOADGEN_RESOURCE, 0)), cpus), "a CPU and a unit of loadgen"
    return cpus, "a CPU"


def loadgen_cluster() -> bool:
    """Whether some node offers the ``loadgen`` resource: then generators run only there."""
    return any(n["Alive"] and n["Resources"].get(LOADGEN_RESOURCE, 0) >= 1 for n in ray.nodes())


def placement(generators: int, stack: ExitStack) -> tuple[list[dict], str]:
    """Actor options, one per generator, and the name of the placement used.

    Each generator takes a CPU, and a unit of ``loadgen`` where nodes offer it (so on
    a cluster with generator nodes, nothing else hosts one).
    """
    loadgen = loadgen_cluster()
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
