"""Series: one per (run, target), named and ordered by one rule everywhere.

A target is identified by its run and its name: two runs' ``async`` targets are
two series, never merged. A series is named by its target alone when there is
one run, else ``<run label>/<target>`` (the run label is the scenario's name when
that tells the runs apart, else the run id). Series keep the order the runs were
given in and each scenario's order of targets, so the first is the baseline of
every comparison. ``analyze``, ``compare`` and the report all use this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from blastradius.analysis.load import Runs, Shard

if TYPE_CHECKING:
    import pandas as pd


def series_names(runs: Runs) -> dict[tuple[str, str], str]:
    """The series name of each (run, target) in the manifests, in their order: the
    target, or ``<run label>/<target>`` when several runs are compared."""
    labels = run_labels(runs) if len(runs.manifests) > 1 else None
    return {
        (run, target): target if labels is None else f"{labels[run]}/{target}"
        for run, manifest in runs.manifests.items()
        for target in manifest.targets
    }


def series_rows(runs: Runs) -> pd.DataFrame:
    """The rows with a ``series`` column (see ``series_names``).

    Series keep the order runs were given in and each scenario's order of targets,
    so the first is the baseline of the ratios.
    """
    import pandas as pd

    rows = runs.rows
    series = rows["target"].astype(str)
    if len(runs.manifests) > 1:
        series = rows["run"].astype(str).map(run_labels(runs)) + "/" + series
    seen = set(series.unique())
    categories = [name for name in dict.fromkeys(series_names(runs).values()) if name in seen]
    categories += sorted(seen - set(categories))
    return rows.assign(series=pd.Categorical(series, categories=categories))


def shard_series(runs: Runs) -> Callable[[Shard], str]:
    """The series a shard's rows belong to, named as ``series_rows`` names them."""
    labels = run_labels(runs) if len(runs.manifests) > 1 else None

    def name(shard: Shard) -> str:
        return shard.target if labels is None else f"{labels[shard.run]}/{shard.target}"

    return name


def run_labels(runs: Runs) -> dict[str, str]:
    """Scenario names when they tell the runs apart, else run ids."""
    names = {run: str(m.scenario.get("name", run)) for run, m in runs.manifests.items()}
    return names if len(set(names.values())) == len(names) else {r: r for r in runs.manifests}
