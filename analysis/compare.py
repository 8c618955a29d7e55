"""Targets or runs side by side, with ratios to the first (the baseline)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from blastradius.analysis.stats import summary

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = ("requests", "availability", "goodput_rps", "p50_ms", "p99_ms", "p999_ms", "max_ms")


def compare(summaries: dict[str, dict] | pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """One row per SUMMARY (a target, or ``run/target``), with ratios to ``baseline``.

    ``summaries`` are ``{name: SUMMARY}`` (``analysis.summary``'s result), or rows:
    ``load(...).rows`` (one series per target) or ``series_rows(runs)`` (one per run
    and target). ``baseline`` defaults to the first entry. Ratio columns:
    ``goodput_x`` and ``p99_x`` (this over the baseline), and ``availability_delta``
    (this minus the baseline). A ratio with a missing or zero side is NaN.
    """
    import pandas as pd

    if isinstance(summaries, pd.DataFrame):
        by = "series" if "series" in summaries else "target"
        summaries = {str(k): v for k, v in summary(summaries, by=by).items()}
    if not summaries:
        return pd.DataFrame(
            columns=["name", *COLUMNS, "errors", "availability_delta", "goodput_x", "p99_x"]
        )
    frame = pd.DataFrame(
        [
            {"name": name, **{c: s[c] for c in COLUMNS}, "errors": sum(s["errors"].values())}
            for name, s in summaries.items()
        ]
    )
    frame[list(COLUMNS)] = frame[list(COLUMNS)].astype(float)
    base = frame.loc[frame["name"] == (baseline or frame["name"].iloc[0])].iloc[0]
    frame["availability_delta"] = frame["availability"] - base["availability"]
    for column, ratio in (("goodput_rps", "goodput_x"), ("p99_ms", "p99_x")):
        denominator = base[column] if base[column] else float("nan")
        frame[ratio] = frame[column] / denominator
    return frame
