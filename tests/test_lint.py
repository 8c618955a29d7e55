"""The code is ruff clean (lint and format) and type checks (mypy), as pyproject
configures them."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_ruff_check_is_clean():
    result = _ruff("check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_type_checker_is_clean(tmp_path):
    """mypy over the package as it is installed (``blastradius.*``, mapped from the top
    folders by pyproject's package-dir, which mypy cannot follow: a tree of links does),
    configured in pyproject (strict on run.json's records and the generators' messages)."""
    package = tmp_path / "blastradius"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for folder in ("cluster", "workers", "targets", "analysis", "scenarios"):
        (package / folder).symlink_to(ROOT / folder)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "-p",
            "blastradius",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
