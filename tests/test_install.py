"""The wheel, installed (not editable) into a fresh virtualenv, works from any directory:
``blastradius run`` of a shipped scenario by name, and ``blastradius demo``.

The venv gets the wheel alone (no index); its dependencies come from this
environment's site-packages as a plain path, so the checkout's editable install,
which needs its own ``.pth`` processing, is not active there.
"""

import json
import site
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, str(wheel)], check=True, capture_output=True, timeout=300)
    purelib = subprocess.run(
        [str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def command(venv: Path, cwd: Path, *args: str, timeout: float = 300, **env: str):
    return subprocess.run(
        [str(venv / "bin/blastradius"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "RAY_AUTH_MODE": "disabled", **env},
    )


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    probe = subprocess.run(
        [
            str(installed / "bin/python"),
            "-c",
            "import json, blastradius.cluster.cli as c, blastradius.scenarios as s;"
            "print(json.dumps([c.__file__, s.__file__]))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    for path in json.loads(probe.stdout):
        assert Path(path).is_relative_to(installed), path
    bare = subprocess.run(
        [str(installed / "bin/python"), "-c", "import cluster"], cwd=tmp_path, capture_output=True
    )
    assert bare.returncode != 0  # nothing installed at top level


def test_run_a_shipped_scenario_by_name_from_another_directory(installed, tmp_path):
    """...into $BLASTRADIUS_OUT, as a Kubernetes head sets it, with no --out."""
    out = tmp_path / "elsewhere"
    result = command(installed, tmp_path, "run", "tiny", BLASTRADIUS_OUT=str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == out and sorted(p.name for p in tmp_path.iterdir()) == ["elsewhere"]
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["totals"]["async"]["requests"] == 100


def test_the_demo_from_another_directory_shows_the_blast_radius(installed, tmp_path):
    """The quick 30 s case, shortened, from the installed wheel in a directory with no
    checkout: the demo's table, report, and the rows behind them."""
    result = command(
        installed, tmp_path, "demo", "--out", "runs", "--set", "load.duration=12s", timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "blastradius demo: scenarios/quick/30s.yaml"
    report = tmp_path / lines[-1].removeprefix("report: ")
    run_dir = tmp_path / lines[-2].removeprefix("run: ")
    assert report == run_dir / "report.html" and report.is_file()
    assert (run_dir / "plots" / "availability_timeline.png").stat().st_size > 5_000
    table = {line.split()[0]: line for line in lines if line.startswith(("blocking ", "async "))}
    assert "318 / 50 threads" in table["blocking"] and "318 / no limit" in table["async"]

    rows = pd.read_parquet(run_dir / "requests")
    assert len(rows) == 2 * 1200
    blocking = rows[rows["target"] == "blocking"]
    async_ = rows[rows["target"] == "async"]
    healthy = list(range(9))

    def availability(part: pd.DataFrame) -> float:
        return float(part["ok"].mean())

    assert availability(async_) >= 0.85
    assert availability(blocking) <= 0.5
    # The blast radius: the blocking service's healthy endpoints fail too ...
    assert availability(blocking[blocking["endpoint"].isin(healthy)]) <= 0.5
    # ... while the async service's healthy endpoints live, and only endpoint 9 fails.
    assert availability(async_[async_["endpoint"].isin(healthy)]) >= 0.95
    assert availability(async_[async_["endpoint"] == 9]) == 0.0
