"""Imports run one way (DESIGN.md), all under ``blastradius.``; the wheel holds that and
the scenarios only. Checked in fresh interpreters and on a wheel built from this tree."""

import ast
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("cluster", "workers", "targets", "analysis")
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
    """The project's packages among ``modules``: ``blastradius.workers`` -> ``workers``."""
    return {m.split(".")[1] for m in modules if m.startswith("blastradius.") and "." in m[12:]}


@pytest.mark.parametrize("module", ["generator", "actor", "client"])
def test_the_generator_loads_no_server_stack_and_nothing_of_cluster_or_analysis(module):
    modules = loaded_by(f"blastradius.workers.{module}")
    assert project(modules) <= {"workers", "targets"}
    assert "aiohttp.web" not in modules and "blastradius.targets.serving" not in modules


@pytest.mark.parametrize("module", ["dependency", "blocking", "serving"])
def test_targets_import_nothing_else_of_the_project(module):
    assert project(loaded_by(f"blastradius.targets.{module}")) == {"targets"}


def test_the_async_target_imports_of_the_workers_only_the_http2_client():
    modules = loaded_by("blastradius.targets.async_target")
    assert project(modules) == {"targets", "workers"}
    workers = {m for m in modules if m.startswith("blastradius.workers.")}
    assert workers <= {
        "blastradius.workers.http2",
        "blastradius.workers.client",
        "blastradius.workers.outcome",
        "blastradius.workers.template",
        "blastradius.workers.kinds",
        "blastradius.workers.record",
        "blastradius.workers.run_record",
        "blastradius.workers.arrow",
    }


def test_analysis_needs_only_the_row_schema_and_the_run_record_of_the_workers():
    modules = loaded_by("blastradius.analysis")
    assert project(modules) <= {"analysis", "workers"}
    workers = {m for m in modules if m.startswith("blastradius.workers.")}
    assert workers <= {
        "blastradius.workers.record",
        "blastradius.workers.kinds",
        "blastradius.workers.arrow",  # the rows' columns to and from numpy
        "blastradius.workers.layout",
        "blastradius.workers.run_record",
    }
    assert "ray" not in modules


ANALYZE = """
import io, contextlib, json, sys
from blastradius.cluster.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(["analyze", *sys.argv[1:]])
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_analyze_reads_a_run_without_importing_pandas(tmp_path, json_flag):
    """pandas takes half a second to import, and reading files needs none of it."""
    import numpy as np
    from test_scan import write_run

    write_run(tmp_path / "run", np.random.default_rng(1), {"a": 300})
    command = [sys.executable, "-c", ANALYZE, str(tmp_path / "run"), *json_flag]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    modules = set(json.loads(result.stdout.splitlines()[-1]))
    assert "blastradius.analysis.scan" in modules and "pandas" not in modules


def bare_imports(source: str) -> list[str]:
    """Imports of a project folder by its bare name (``import cluster``, ``from workers.x``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in FOLDERS]
    return found


@pytest.mark.parametrize(
    ("source", "bare"),
    [
        ("import cluster", ["cluster"]),
        ("from workers.record import SCHEMA", ["workers.record"]),
        ("import os, analysis.load", ["analysis.load"]),
        ("def f():\n    from targets import spec", ["targets"]),
        ("from blastradius.cluster import cli", []),
        ("from . import x", []),
        ("import clusters", []),
    ],
)
def test_the_bare_import_check_catches_what_it_should(source, bare):
    assert bare_imports(source) == bare


def test_no_module_imports_a_project_folder_by_its_bare_name():
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in (*FOLDERS, "tests", "benchmarks", "scenarios")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in bare_imports(path.read_text())
    ]
    assert offenders == []


def test_the_wheel_installs_one_namespace_with_the_scenarios(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"blastradius"}
    packages = {n.split("/")[1] for n in names if n.startswith("blastradius/")}
    assert packages == {*FOLDERS, "scenarios"}
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "scenarios").rglob("*.yaml")}
    assert {f"blastradius/{s}" for s in shipped} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "blastradius = blastradius.cluster.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    )
