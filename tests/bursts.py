"""Concurrent calls through a target with a /healthz probe sent meanwhile, timed."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests

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
