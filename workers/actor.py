"""Ray wrappers, thin: a generator actor, and a collector that turns batches into shards.

``GeneratorActor.run(share, output)`` runs a ``Generator`` on a thread of its
own with its own event loop (uvloop where installed), so the actor's loop
stays free for ``progress()`` and ``stop()``, which also live in their own
concurrency group. Closed batches leave through ``output``:

- ``ToCollector``: to a ``ShardCollector`` actor (placed by the driver on its
  own node) that writes shards as they arrive, with a writer thread per
  generator; the generator awaits each write before the next, so a batch handed
  over before a crash is on disk, and no generator waits on another's write.
- ``ToStorage``: straight to shared storage (``s3://``, ``gs://``, a mounted
  volume) from the generator's node.

Neither actor is restarted or retried: a retried generator would replay load.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import ray

from blastradius.targets.runtime import new_event_loop
from blastradius.workers.generator import Generator, Share, Sink
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.messages import Progress, Summary
from blastradius.workers.metrics import LiveMetrics
from blastradius.workers.shards import write_shard


@dataclass(frozen=True)
class ToStorage:
    """Write shards directly under ``run_dir`` (a path every node sees, or a URI)."""

    run_dir: str

    def sink(self, target: str, worker: int) -> Sink:
        """A sink that publishes each batch as the worker's next shard."""
        directory, counter = shard_dir(self.run_dir, target), itertools.count()

        def publish(batch: pa.RecordBatch) -> None:
            write_shard([batch], directory, shard_name(worker, next(counter)))

        return publish


@dataclass(frozen=True)
class ToCollector:
    """Hand each batch to a ``ShardCollector`` actor and wait until it is written."""

    collector: Any  # ActorHandle of ShardCollector

    def sink(self, target: str, worker: int) -> Sink:
        """A sink that ships each batch to the collector; the generator awaits the write."""
        counter = itertools.count()
        return lambda batch: self.collector.put.remote(target, worker, next(counter), batch)


@ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)
class ShardCollector:
    """Writes the batches generators hand it as shards under ``run_dir``, several at once.

    An async actor: each ``put`` waits for its own write on a pool of ``writers``
    threads (Parquet encoding and file writes release the GIL), so generators' writes
    overlap instead of queueing behind one another. A generator has at most one write
    outstanding, so with a writer per generator none waits on another's.
    """

    def __init__(self, run_dir: str, writers: int) -> None:
        self.run_dir = run_dir
        self.shards = 0
        self.pool = ThreadPoolExecutor(writers, "shard-writer")

    async def put(self, target: str, worker: int, n: int, batch: pa.RecordBatch) -> str:
        """Publish one batch as ``part-<worker>-<n>``; returns the shard's path."""
        directory, name = shard_dir(self.run_dir, target), shard_name(worker, n)
        loop = asyncio.get_running_loop()
        path = await loop.run_in_executor(self.pool, write_shard, [batch], directory, name)
        self.shards += 1
        return path

    async def written(self) -> int:
        """Shards written so far."""
        return self.shards


def _run_on_own_loop(generator: Generator) -> Summary:
    keep_default_priority()
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(generator.run())


def keep_default_priority() -> None:
    """Run this thread at the machine's default priority (nice 0), where it may.

    Ray nices its worker processes to 15 (``worker_niceness``): a generator there gets a
    sliver of a core shared with anything at nice 0 (the target on a laptop, Ray's own
    processes), and falls behind its schedule in bursts of hundreds of milliseconds.
    The embedded cluster is started with niceness 0, and the manifests in ``k8s/`` set
    ``RAY_worker_niceness=0``; elsewhere, lowering it needs CAP_SYS_NICE (or a
    ``RLIMIT_NICE`` that allows it), else the thread stays as Ray left it."""
    with contextlib.suppress(AttributeError, OSError):
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) > 0:
            os.setpriority(os.PRIO_PROCESS, tid, 0)


@ray.remote(  # type: ignore[call-overload]  # Ray's stubs lack concurrency_groups
    num_cpus=1, max_restarts=0, max_task_retries=0, concurrency_groups={"control": 1}
)
class GeneratorActor:
    """One load generator on one core of a node of the Ray cluster."""

    def __init__(self) -> None:
        self.node = ray.get_runtime_context().get_node_id()
        self.generator: Generator | None = None

    async def run(
        self, share: Share, output: ToStorage | ToCollector, metrics: bool = True
    ) -> Summary:
        """Send the share's share and record every request; returns the generator's summary.
        With ``metrics``, each batch also feeds the live metrics (``workers.metrics``)."""
        sink = output.sink(share.target, share.worker)
        if metrics:
            live = LiveMetrics(share.target, share.worker, self._in_flight)
            sink = live.metered(sink)
        self.generator = Generator(share, sink, self.node)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, _run_on_own_loop, self.generator)

    def _in_flight(self) -> int:
        return 0 if self.generator is None else self.generator.in_flight

    @ray.method(concurrency_group="control")
    def ready(self) -> str:
        """The node this generator runs on, once its process is up (wait for it before
        choosing a start time every generator can keep)."""
        return self.node

    @ray.method(concurrency_group="control")
    def progress(self) -> Progress | None:
        """Counters so far (None before ``run`` starts)."""
        return None if self.generator is None else self.generator.progress()

    @ray.method(concurrency_group="control")
    def stop(self) -> None:
        """Stop sending; ``run`` returns once requests in flight have ended."""
        if self.generator is not None:
            self.generator.stop()
