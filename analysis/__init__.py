"""Analysis of blastradius runs: pure functions over the request rows (nothing of Ray).

from blastradius.analysis import load, summary, timeline
runs = load("runs/blast-radius-20261126T210000Z-3f9a")
summary(runs.rows)              # {target: SUMMARY}
timeline(runs.rows, 1_000_000_000)

The plots and the HTML report (matplotlib, imported only there):
``analysis.report.write_report([run_dir], out_dir)``.
"""

# None of these imports pandas until rows are loaded: the command line reads runs with
# ``analysis.scan`` and never needs it (its import takes half a second).
from blastradius.analysis.compare import compare
from blastradius.analysis.load import Runs, dataset, load
from blastradius.analysis.stats import grouped_quantiles, summarize, summary, timeline

__all__ = [
    "Runs",
    "compare",
    "dataset",
    "grouped_quantiles",
    "load",
    "summarize",
    "summary",
    "timeline",
]
