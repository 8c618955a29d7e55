"""Waiting on a condition, never a fixed sleep: tests hold on a loaded machine."""

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(probe: Callable[[], T], accept: Callable[[T], bool], timeout_s: float = 30) -> T:
    """Call ``probe`` until ``accept`` takes its value (returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached in {timeout_s:.0f}s; last value: {value!r}")
        time.sleep(0.02)
