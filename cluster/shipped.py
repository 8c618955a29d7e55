"""The scenarios that ship with blastradius, found by name from any directory.

``blastradius run smoke`` and ``blastradius run essay/30s`` name files of the
``blastradius.scenarios`` package data; a path that exists always wins.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE = "blastradius.scenarios"


def _root() -> Path:
    # Installed as files (wheel or editable), never zipped: a plain path.
    return Path(str(resources.files(PACKAGE)))


def shipped_names() -> list[str]:
    """Every shipped scenario's name: its path under the package, without ``.yaml``."""
    root = _root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def shipped(name: str) -> Path | None:
    """The shipped scenario called ``name`` (``.yaml`` optional), or None."""
    stem = name.removesuffix(".yaml").removeprefix("scenarios/")
    return _root() / f"{stem}.yaml" if stem in shipped_names() else None


def scenario_path(given: str) -> Path:
    """The file a ``SCENARIO`` argument means: an existing path, else a shipped name.

    ``ValueError`` (one line) when it is neither.
    """
    path = Path(given)
    if path.is_file():
        return path
    found = shipped(given)
    if found is not None:
        return found
    names = ", ".join(shipped_names())
    raise ValueError(
        f"{given}: No such file or directory, nor a shipped scenario of that name ({names})"
    )
