"""Imports run one way (DESIGN.md): checked in a fresh interpreter, module by module."""

import json
import subprocess
import sys

import pytest

PROBE = """
import importlib, json, sys
importlib.import_module(sys.argv[1])
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(module: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, module], capture_output=True, text=True, check=True
    )
    return set(json.loads(result.stdout))


def project(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules} & {"cluster", "workers", "targets", "analysis"}


@pytest.mark.parametrize("module", ["workers.generator", "workers.actor", "workers.client"])
def test_the_generator_loads_no_server_stack_and_nothing_of_cluster_or_analysis(module):
    modules = loaded_by(module)
    assert project(modules) <= {"workers", "targets"}
    assert "aiohttp.web" not in modules and "targets.serving" not in modules


@pytest.mark.parametrize("module", ["targets.dependency", "targets.blocking", "targets.serving"])
def test_targets_import_nothing_else_of_the_project(module):
    assert project(loaded_by(module)) == {"targets"}


def test_analysis_needs_only_the_row_schema_of_the_workers():
    modules = loaded_by("analysis")
    assert project(modules) <= {"analysis", "workers"}
    assert {m for m in modules if m.startswith("workers.")} <= {"workers.record"}
    assert "ray" not in modules
