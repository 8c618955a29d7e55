"""Building the project's wheel in a test, from a copy of the tree (the build leaves
``build/`` and ``*.egg-info`` behind, and must not in the checkout)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "cluster", "workers", "targets", "analysis")
PACKAGE_DATA = ("scenarios",)


def build_wheel(directory: Path) -> Path:
    """Build the wheel into ``directory`` (pip, isolated build); its path."""
    source = directory / "source"
    for name in (*SOURCES, *PACKAGE_DATA):
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, source / name)
    dist = directory / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(dist)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = dist.glob("blastradius-*.whl")
    return wheel
