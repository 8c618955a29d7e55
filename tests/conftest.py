"""Shared fixtures: real reference services on 127.0.0.1, ready when they say so."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Ray clusters the tests start are private and on loopback, like the CLI's embedded one;
# Ray reads these when it is imported.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest
from wheels import build_wheel

from blastradius.cluster import launch
from blastradius.targets.runtime import raise_nofile_limit


@pytest.fixture(scope="session", autouse=True)
def _open_file_limit() -> None:
    raise_nofile_limit()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built once per session from a copy of the tree."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def slow_dependency() -> Iterator[launch.Service]:
    """Endpoint 0 takes 1 s, endpoint 1 takes 2 s, endpoint 2 always fails."""
    with launch.start("dependency", ["--latency", "1s,2s,0", "--errors", "0,0,1"]) as service:
        yield service


@pytest.fixture(scope="module")
def blocking_2_threads(slow_dependency: launch.Service) -> Iterator[launch.Service]:
    args = ["--dependency", slow_dependency.url, "--threads", "2", "--dependency-timeout", "1.5s"]
    with launch.start("blocking", args) as service:
        yield service


@pytest.fixture(scope="module")
def async_target(slow_dependency: launch.Service) -> Iterator[launch.Service]:
    args = ["--dependency", slow_dependency.url, "--dependency-timeout", "1.5s"]
    with launch.start("async", args) as service:
        yield service
