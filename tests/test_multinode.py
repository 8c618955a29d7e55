"""The driver on a three-node Ray cluster (ray.cluster_utils): spreading, and a lost node."""

import threading
import time
from collections.abc import Iterator

import pandas as pd
import pytest
import ray
from ray.cluster_utils import Cluster

from blastradius.analysis import on_ray, scan
from blastradius.analysis.load import locate
from blastradius.cluster import driver
from blastradius.cluster.manifest import read_manifest
from blastradius.cluster.scenario import parse_scenario

FAST_FAILURE_DETECTION = {
    "health_check_initial_delay_ms": 0,
    "health_check_period_ms": 500,
    "health_check_failure_threshold": 3,
}


@pytest.fixture
def three_nodes() -> Iterator[tuple[Cluster, list]]:
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": False,
            "_system_config": FAST_FAILURE_DETECTION,
        },
    )
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def scenario(seconds: int, rate: int) -> dict:
    return {
        "name": "spread",
        "generators": 3,
        # A deadline far above the 5 ms dependency: three Ray nodes on a loaded 2-core
        # machine can stall a request for a second; these tests are about placement.
        "load": {"rate": rate, "duration": f"{seconds}s", "timeout": "5s"},
        "dependency": {"latency": "5*3"},
        "targets": [{"name": "async", "kind": "async"}],
    }


def test_three_generators_run_on_three_nodes_and_a_fourth_is_bad_input(
    three_nodes, tmp_path, monkeypatch
):
    cluster, _ = three_nodes
    document = {**scenario(2, 50), "generators": 4}
    with pytest.raises(driver.RunInputError) as raised:
        driver.run(parse_scenario(document), str(tmp_path), cluster.address, lambda line: None)
    assert str(raised.value) == "generators: 4 need a CPU each; the cluster has 3 free"
    assert list(tmp_path.iterdir()) == []  # before any run directory
    # As many generators as one collector is near its limit with: on three nodes a
    # local path cannot be theirs, so the collector writes, and the log says so.
    monkeypatch.setattr(driver, "DIRECT_WRITE_AT", 3)
    lines: list[str] = []
    outcome = driver.run(
        parse_scenario(scenario(3, 90)), str(tmp_path), cluster.address, lines.append
    )
    assert outcome.status == "completed"
    assert any("3 generators on 3 nodes hand their rows to one collector" in x for x in lines)
    rows = pd.read_parquet(f"{outcome.run_dir}/requests")
    assert len(rows) == 270 and rows["ok"].all()
    assert rows.groupby("worker")["node"].nunique().eq(1).all()
    assert rows["node"].nunique() == 3
    target = read_manifest(outcome.run_dir)["targets"]["async"]
    assert target["placement"] == "STRICT_SPREAD"
    assert {g["node"] for g in target["generators"]} == set(rows["node"])
    # analyze --ray: the same summaries, computed on the three nodes with Ray Data.
    _, shards = locate(outcome.run_dir)
    if not ray.is_initialized():
        ray.init(address=cluster.address, log_to_driver=False)
    spread = on_ray.summaries(shards, lambda shard: shard.target)
    assert spread == scan.summaries(shards, lambda shard: shard.target)
    assert spread["async"]["requests"] == 270


def test_a_lost_node_leaves_a_partial_run_with_the_others_complete(three_nodes, tmp_path):
    cluster, workers = three_nodes
    doomed = workers[0]
    removal = threading.Timer(
        1.5, cluster.remove_node, args=(doomed,), kwargs={"allow_graceful": False}
    )
    removal_started = threading.Event()

    def log(line: str) -> None:
        # The first progress line: every generator is sending. Kill a node shortly after.
        if line.startswith("async:") and not removal_started.is_set():
            removal_started.set()
            removal.start()

    start = time.monotonic()
    outcome = driver.run(parse_scenario(scenario(8, 60)), str(tmp_path), cluster.address, log)
    removal.join()
    assert time.monotonic() - start < 120
    assert outcome.status == "partial"

    manifest = read_manifest(outcome.run_dir)
    assert manifest["status"] == "partial"
    generators = manifest["targets"]["async"]["generators"]
    lost = [g for g in generators if g["state"] == "lost"]
    assert len(lost) == 1 and lost[0]["node"] == doomed.node_id
    missing = lost[0]["missing"]
    # Missing from about its loss (rows up to its last handed-over batch are on disk) to
    # the planned end: a window, never empty.
    assert missing["from"] <= lost[0]["lost_at"] < missing["to"]
    assert missing["to"] == manifest["targets"]["async"]["planned_end"]
    assert sorted(g["state"] for g in generators) == ["completed", "completed", "lost"]

    rows = pd.read_parquet(f"{outcome.run_dir}/requests")
    by_worker = rows.groupby("worker").size()
    survivors = [g["worker"] for g in generators if g["state"] == "completed"]
    # Each surviving generator sent its whole share: 480 requests over three workers.
    assert all(by_worker[w] == 160 for w in survivors)
    # The lost one's rows up to its last handed-over batch are on disk.
    assert 0 < by_worker.get(lost[0]["worker"], 0) < 160


def test_services_run_on_a_node_offering_the_targets_resource(tmp_path):
    import socket
    from urllib.parse import urlsplit

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    services_node = cluster.add_node(num_cpus=1, resources={"targets": 1})
    cluster.wait_for_nodes()
    try:
        document = {**scenario(2, 50), "generators": 1}
        outcome = driver.run(
            parse_scenario(document), str(tmp_path), cluster.address, lambda line: None
        )
        assert outcome.status == "completed"
        services = read_manifest(outcome.run_dir)["services"]
        assert services["node"] == services_node.node_id
        assert set(services["urls"]) == {"dependency", "async"}
        rows = pd.read_parquet(f"{outcome.run_dir}/requests")
        assert len(rows) == 100 and rows["ok"].all()
        for url in services["urls"].values():  # stopped with the run
            parts = urlsplit(url)
            with socket.socket() as sock:
                assert sock.connect_ex((parts.hostname, parts.port)) != 0
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_generators_run_only_on_nodes_offering_loadgen_one_per_unit(tmp_path):
    """With generator nodes (the ``loadgen`` resource), a node with spare CPUs but no
    ``loadgen`` gets no generator, and the default count is one per ``loadgen`` unit."""
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False}
    )
    loadgen = [cluster.add_node(num_cpus=1, resources={"loadgen": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    try:
        document = scenario(2, 60)
        del document["generators"]  # one per free slot
        outcome = driver.run(
            parse_scenario(document), str(tmp_path), cluster.address, lambda line: None
        )
        assert outcome.status == "completed"
        rows = pd.read_parquet(f"{outcome.run_dir}/requests")
        assert len(rows) == 120 and rows["ok"].all()
        assert set(rows["node"]) == {node.node_id for node in loadgen}
        manifest = read_manifest(outcome.run_dir)
        assert manifest["ray"]["generators"] == 2
        assert manifest["targets"]["async"]["placement"] == "STRICT_SPREAD"
    finally:
        ray.shutdown()
        cluster.shutdown()
