"""The generator as a Ray actor on a private local cluster: rows, shards, control calls."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pandas as pd
import pytest
from waits import wait_for

from blastradius.cluster import launch
from blastradius.workers.generator import Share
from blastradius.workers.schedule import Schedule

ray = pytest.importorskip("ray")

S = 1_000_000_000


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray.init(address="local", num_cpus=3, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def target() -> Iterator[launch.Service]:
    with (
        launch.start("dependency", ["--latency", "1ms*3"]) as dependency,
        launch.start("async", ["--dependency", dependency.url]) as service,
    ):
        yield service


def _plans(target_url: str, workers: int, seconds: int, rate: int, start_ns: int) -> list[Share]:
    urls = tuple(f"{target_url}/call/{i}" for i in range(3))
    schedule = Schedule.constant_rate(rate, duration_ns=seconds * S)
    return [
        Share(
            "async", urls, schedule, timeout_ns=1 * S, worker=w, workers=workers, start_ns=start_ns
        )
        for w in range(workers)
    ]


def test_generators_hand_batches_to_the_collector_which_writes_shards(local_ray, target, tmp_path):
    from blastradius.workers.actor import GeneratorActor, ShardCollector, ToCollector

    collector = ShardCollector.remote(str(tmp_path), writers=2)
    actors = [GeneratorActor.remote() for _ in range(2)]
    nodes = ray.get([actor.ready.remote() for actor in actors])
    plans = _plans(target.url, 2, 3, 200, time.time_ns() + S // 2)
    output = ToCollector(collector)
    runs = [actor.run.remote(plan, output) for actor, plan in zip(actors, plans, strict=True)]
    progress = wait_for(
        lambda: ray.get([actor.progress.remote() for actor in actors]),
        lambda reports: all(p is not None and p.sent > 100 for p in reports),
    )
    summaries = ray.get(runs)

    assert all(p.sent > 100 for p in progress)
    assert [s.rows for s in summaries] == [300, 300]
    rows = pd.read_parquet(tmp_path / "requests")
    assert len(rows) == 600 and rows["ok"].all()
    assert set(rows["target"]) == {"async"}
    assert set(rows["node"]) == set(nodes) == {ray.get_runtime_context().get_node_id()}
    # Interleaved: global index seq * 2 + worker covers the schedule once; endpoints cycle.
    global_index = rows["seq"] * 2 + rows["worker"]
    assert sorted(global_index) == list(range(600))
    assert (rows["endpoint"] == global_index % 3).all()
    shards = sorted(p.name for p in (tmp_path / "requests" / "target=async").iterdir())
    assert shards and all(name.startswith("part-000") for name in shards)
    assert ray.get(collector.written.remote()) == len(shards)


def _random_batch(rows: int):
    """``rows`` rows of the request schema with random (incompressible) numbers: slow
    to encode and write."""
    import numpy as np
    import pyarrow as pa

    from blastradius.workers.record import SCHEMA

    rng, columns = np.random.default_rng(0), []
    for field in SCHEMA:
        kind = field.type
        if pa.types.is_dictionary(kind):
            columns.append(pa.DictionaryArray.from_arrays(np.zeros(rows, np.int32), ["x"]))
        elif pa.types.is_boolean(kind):
            columns.append(pa.array(np.ones(rows, bool)))
        else:
            high = 2 ** (kind.bit_width - 2)
            columns.append(pa.array(rng.integers(0, high, rows).astype(kind.to_pandas_dtype())))
    return pa.RecordBatch.from_arrays(columns, schema=SCHEMA)


@pytest.mark.parametrize("writers", [2, 1])
def test_a_generators_write_does_not_wait_behind_anothers(local_ray, tmp_path, writers):
    """With a writer per generator (as the driver sizes the collector), a small batch is
    on disk while a big one handed over first is still being written; with one writer
    it waits behind it."""
    from blastradius.workers.actor import ShardCollector

    collector = ShardCollector.remote(str(tmp_path), writers)
    big, small = ray.put(_random_batch(3_000_000)), ray.put(_random_batch(10))
    slow = collector.put.remote("t", 0, 0, big)
    # The small batch is handed over once the big one's file is being written (a
    # temporary name, until it is published): the order the collector takes them in.
    shards = tmp_path / "requests" / "target=t"
    wait_for(
        lambda: [p.name for p in shards.iterdir()] if shards.exists() else [],
        lambda names: any(name.startswith("_") for name in names),
        timeout_s=120,
    )
    quick = collector.put.remote("t", 1, 0, small)
    (first,), _ = ray.wait([slow, quick], num_returns=1, timeout=120)
    assert (first == quick) == (writers == 2)
    ray.get([slow, quick])
    assert ray.get(collector.written.remote()) == 2
    ray.kill(collector)


def test_generators_write_straight_to_shared_storage(local_ray, target, tmp_path):
    from blastradius.workers.actor import GeneratorActor, ToStorage

    actor = GeneratorActor.remote()
    ray.get(actor.ready.remote())
    (plan,) = _plans(target.url, 1, 2, 100, time.time_ns() + S // 2)
    summary = ray.get(actor.run.remote(plan, ToStorage(str(tmp_path))))
    rows = pd.read_parquet(tmp_path / "requests")
    assert summary.rows == len(rows) == 200


def test_stop_reaches_a_running_generator(local_ray, target, tmp_path):
    from blastradius.workers.actor import GeneratorActor, ToStorage

    actor = GeneratorActor.remote()
    ray.get(actor.ready.remote())
    (plan,) = _plans(target.url, 1, 60, 100, time.time_ns())
    run = actor.run.remote(plan, ToStorage(str(tmp_path)))
    wait_for(lambda: ray.get(actor.progress.remote()), lambda p: p is not None and p.sent >= 50)
    ray.get(actor.stop.remote())
    summary = ray.get(run, timeout=30)
    assert summary.stopped is True
    assert 50 <= summary.rows == len(pd.read_parquet(tmp_path / "requests")) < 1000


@ray.remote
def _priorities_around_keep_default_priority() -> list[int]:
    import os
    import threading

    from blastradius.workers.actor import keep_default_priority

    seen: list[int] = []

    def body() -> None:
        tid = threading.get_native_id()
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))
        keep_default_priority()
        seen.append(os.getpriority(os.PRIO_PROCESS, tid))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    return seen


@pytest.mark.skipif(os.geteuid() != 0, reason="lowering a niceness needs CAP_SYS_NICE")
def test_a_generators_thread_leaves_the_niceness_ray_gives_its_workers(local_ray):
    # Ray runs workers at nice 15, where a generator yields its core to anything else.
    assert ray.get(_priorities_around_keep_default_priority.remote()) == [15, 0]


EMBEDDED = """
import os, ray
from blastradius.cluster import joining
joining.connect(None)
print(ray.get(ray.remote(lambda: os.getpriority(os.PRIO_PROCESS, 0)).remote()))
"""


def test_the_embedded_cluster_runs_its_workers_at_the_default_priority():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    result = subprocess.run(
        [sys.executable, "-c", EMBEDDED], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.stdout.split()[-1:] == ["0"], result.stderr[-2000:]


def test_from_so_many_generators_on_one_node_they_write_the_run_themselves(
    local_ray, tmp_path, monkeypatch
):
    # One collector is near its limit at 32 generators of 10,000 rows a second
    # (benchmarks/control_plane.py); from driver.DIRECT_WRITE_AT the generators write a
    # path of the one node themselves (absolute: their working directory is not ours).
    from contextlib import ExitStack

    from blastradius.cluster import driver
    from blastradius.workers.actor import ToCollector, ToStorage

    monkeypatch.chdir(tmp_path)
    lines: list[str] = []
    with ExitStack() as stack:
        few = driver._output("runs/r", driver.DIRECT_WRITE_AT - 1, stack, lines.append)
        many = driver._output("runs/r", driver.DIRECT_WRITE_AT, stack, lines.append)
        more = driver._output("runs/r", driver.DIRECT_WRITE_AT + 1, stack, lines.append)
        # A URI is written by the generators themselves however many there are.
        uri = driver._output("file:///shared/r", 1, stack, lines.append)
    assert isinstance(few, ToCollector)
    assert many == more == ToStorage(str(tmp_path / "runs" / "r"))
    assert uri == ToStorage("file:///shared/r")
    assert lines == [
        f"shards: written by the {n} generators themselves (one node)"
        for n in (driver.DIRECT_WRITE_AT, driver.DIRECT_WRITE_AT + 1)
    ]
