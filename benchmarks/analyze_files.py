"""Benchmark: ``blastradius analyze RUN`` over files, beside DuckDB and plain pandas.

    python benchmarks/analyze_files.py [--rows 10000000 30000000] [--keep DIR] [--json FILE]
        [--skip NAME ...] [--also check report] [--slow-from F]

The user's path: a run on disk (written by ``synthetic_run.py``: two targets, one hour,
shards of a million rows) and the command that reads it. Each approach runs in a
process of its own, pinned to one core (``taskset``), one thread where it has a
choice; timed from start to exit (imports included: the user waits for them too), with
the process's peak RSS (``wait4``). Each computes one summary per target: requests,
ok, error kinds, first and last intended time, the latency percentiles p50 to p9999
and the max of ok requests, service p99 and send-lag p99:

- blastradius: ``blastradius analyze RUN --json`` (``analysis.scan``: two passes over
  the files), and the path it replaced, ``analysis.load(RUN)`` then ``summary``;
- DuckDB, one thread: SQL over the shards (``quantile_disc``);
- pandas: ``read_parquet`` of the columns, then ``groupby().quantile()``.

``--slow-from F`` writes runs with a fault from that fraction of their time on (five
times the service time), which a sample of shards mistakes: ``analyze`` then reads every
shard twice (``analysis.scan.summaries``).

``--also check report`` times ``blastradius check RUN --slo FILE`` (availability and
p99, over the run and per 10 s window) and ``blastradius report RUN`` too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORE = "0"

LOAD = """
import sys
from blastradius.analysis import load, summary
summary(load(sys.argv[1]).rows)
"""

DUCKDB = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads TO 1")
con.execute(f'''
CREATE VIEW r AS SELECT * FROM read_parquet('{sys.argv[1]}/requests/*/*.parquet',
                                            hive_partitioning = true)''')
con.execute('''
SELECT target, count(*) AS requests, count(*) FILTER (ok) AS ok,
       min(intended_ns), max(intended_ns),
       quantile_disc(latency_ns, [0.5, 0.9, 0.99, 0.999, 0.9999]) FILTER (ok),
       max(latency_ns) FILTER (ok),
       quantile_disc(service_ns, 0.99) FILTER (ok),
       quantile_disc(sent_ns - intended_ns, 0.99) FILTER (sent_ns IS NOT NULL)
FROM r GROUP BY target''').fetchall()
con.execute("SELECT target, error, count(*) FROM r GROUP BY target, error").fetchall()
"""

PANDAS = """
import sys, glob
import pandas as pd
columns = ["intended_ns", "sent_ns", "latency_ns", "service_ns", "ok", "error"]
frames = []
for path in sorted(glob.glob(f"{sys.argv[1]}/requests/*/*.parquet")):
    frame = pd.read_parquet(path, columns=columns)
    frames.append(frame.assign(target=path.split("/")[-2]))
rows = pd.concat(frames, ignore_index=True)
by = rows.groupby("target")
by.agg(requests=("ok", "size"), ok=("ok", "sum"), first=("intended_ns", "min"),
       last=("intended_ns", "max"))
ok = rows[rows["ok"]].groupby("target")
ok["latency_ns"].quantile([0.5, 0.9, 0.99, 0.999, 0.9999], interpolation="higher")
ok["latency_ns"].max()
ok["service_ns"].quantile(0.99, interpolation="higher")
(rows["sent_ns"] - rows["intended_ns"]).groupby(rows["target"]).quantile(0.99)
rows.groupby(["target", "error"], observed=True).size()
"""


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of ``command`` pinned to one core."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ARROW_NUM_THREADS": "1"}
    start = time.perf_counter()
    process = subprocess.Popen(
        ["taskset", "-c", CORE, *command], env=env, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 3):  # check: 3 when not met
        raise RuntimeError(f"{command[:3]} failed")
    return elapsed, usage.ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


SLO = "availability: 0.85\np99: 1s\nwindow: 10s\n"


def approaches(run: Path, also: list[str], workdir: Path) -> dict[str, list[str]]:
    blastradius = [sys.executable, "-m", "blastradius.cluster"]
    found = {
        "blastradius analyze": [*blastradius, "analyze", str(run), "--json"],
        "load + summary (before)": [sys.executable, "-c", LOAD, str(run)],
        "duckdb, 1 thread": [sys.executable, "-c", DUCKDB, str(run)],
        "pandas": [sys.executable, "-c", PANDAS, str(run)],
    }
    if "check" in also:
        slo = workdir / "slo.yaml"
        slo.write_text(SLO)
        found["blastradius check"] = [*blastradius, "check", str(run), "--slo", str(slo)]
    if "report" in also:
        out = workdir / f"report-{run.name}"
        found["blastradius report"] = [*blastradius, "report", str(run), "--out", str(out)]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000_000, 30_000_000])
    parser.add_argument("--skip", nargs="*", default=[], help="approaches to leave out")
    parser.add_argument("--also", nargs="*", default=[], choices=["check", "report"])
    parser.add_argument("--keep", type=Path, help="write the runs here and keep them")
    parser.add_argument(
        "--slow-from", type=float, help="runs with a fault from this fraction of their time"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="blastradius-analyze-"))
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        for rows in args.rows:
            write = [sys.executable, str(HERE / "synthetic_run.py"), "--rows", str(rows)]
            run = workdir / f"run-{rows}"
            if args.slow_from is not None:
                run = run.with_name(f"{run.name}-slow-from-{args.slow_from}")
                write += ["--slow-from", str(args.slow_from)]
            if not run.exists():
                subprocess.run([*write, str(run)], check=True, stdout=subprocess.DEVNULL)
            results[str(rows)] = {}
            for name, command in approaches(run, args.also, workdir).items():
                if any(skip in name for skip in args.skip):
                    continue
                seconds, gib = timed(command)
                results[str(rows)][name] = {"seconds": seconds, "peak_rss_gib": gib}
                print(f"{rows:>11,} rows  {name:<24} {seconds:7.1f} s  {gib:6.2f} GiB", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
