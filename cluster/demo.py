"""``blastradius demo`` (preview): the blast radius on the real reference services.

Until the Ray load generator exists, the demo shows the essence with a
handful of requests: four concurrent calls through a 2-thread blocking
target and through the async target to a 1 s dependency endpoint, with a
``/healthz`` probe sent while they are in flight. The blocking target needs
two rounds (its threads are all stuck) and its health check waits too; the
async target answers in one round and stays healthy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import requests

from cluster import launch

PROBE_DELAY_S = 0.2


@dataclass(frozen=True)
class Burst:
    """What a burst of concurrent calls saw: statuses, time for all, /healthz time."""

    statuses: tuple[int, ...]
    all_answered_s: float
    healthz_s: float


def _timed_get(url: str, timeout_s: float) -> tuple[int, float]:
    start = time.monotonic()
    status = requests.get(url, timeout=timeout_s).status_code
    return status, time.monotonic() - start


def concurrent_calls(
    target_url: str, calls: int, path: str = "/call/0", timeout_s: float = 30.0
) -> Burst:
    """Send ``calls`` concurrent GETs of ``path``, probe ``/healthz`` meanwhile, time both."""
    with ThreadPoolExecutor(calls + 1) as pool:
        start = time.monotonic()
        futures = [pool.submit(_timed_get, target_url + path, timeout_s) for _ in range(calls)]
        time.sleep(PROBE_DELAY_S)  # let the calls take their threads before probing
        healthz = pool.submit(_timed_get, target_url + "/healthz", timeout_s)
        statuses = tuple(f.result()[0] for f in futures)
        all_answered_s = time.monotonic() - start
        return Burst(statuses, all_answered_s, healthz.result()[1])


def run_preview(out: Callable[[str], None]) -> dict[str, Burst]:
    """Start dependency, blocking (2 threads) and async targets; burst each; print a table."""
    out("blastradius demo (preview: the reference services with a few requests; the Ray")
    out("load generator, Parquet rows and reports are not built yet)")
    with ExitStack() as stack:
        dependency = stack.enter_context(launch.start("dependency", ["--latency", "1s"]))
        targets = {
            "blocking, 2 threads": stack.enter_context(
                launch.start("blocking", ["--dependency", dependency.url, "--threads", "2"])
            ),
            "async": stack.enter_context(launch.start("async", ["--dependency", dependency.url])),
        }
        out(f"dependency {dependency.url}: one endpoint, 1 s per call")
        out("4 concurrent calls through each target, /healthz probed while they run:\n")
        out(f"{'target':<22}{'statuses':<22}{'all answered':>14}{'/healthz took':>16}")
        results = {}
        for name, service in targets.items():
            burst = results[name] = concurrent_calls(service.url, 4)
            out(
                f"{name:<22}{','.join(map(str, burst.statuses)):<22}"
                f"{burst.all_answered_s:>13.2f}s{burst.healthz_s:>15.3f}s"
            )
    out("\nThe blocking target serves 2 calls at a time, so 4 take two rounds and even its")
    out("health check waits for a thread; the async target waits on all 4 at once.")
    return results
