"""Plots and the HTML report: PNGs that decode, pages whose every image exists or is embedded."""

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from blastradius.analysis import load, plots
from blastradius.analysis.report import figures, window_ns, write_report
from blastradius.analysis.scan import curves, open_runs
from blastradius.workers.layout import shard_dir, shard_name
from blastradius.workers.outcome import TIMEOUT
from blastradius.workers.record import RowBuffer
from blastradius.workers.shards import write_shard

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]  # the CLI, as installed

S, MS = 1_000_000_000, 1_000_000
T0 = 1_790_000_000_000_000_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _batch(n: int, fail_every: int = 0, endpoints: int = 10) -> pa.RecordBatch:
    """n requests 10 ms apart; every ``fail_every``-th times out, latency grows with i."""
    buffer = RowBuffer(worker=0, node="node-a")
    for i in range(n):
        intended = T0 + i * 10 * MS
        failed = fail_every and i % fail_every == 0
        service = S if failed else (5 + i % 50) * MS
        status, error = (0, TIMEOUT) if failed else (200, 0)
        buffer.add(
            i, i % endpoints, intended, intended + MS, intended + MS + service, status, error, 2
        )
    return buffer.close()


def _write_run(
    run_dir: Path, targets: dict[str, pa.RecordBatch | None], faults=(), patterns=None
) -> Path:
    run_dir.mkdir(parents=True)
    manifest = {
        "run_id": run_dir.name,
        "status": "completed",
        "scenario": {"name": run_dir.name.split("-")[0]},
        "targets": {
            name: {
                "start_ns": T0,
                "placement": "SPREAD",
                "generators": [{"worker": 0, "node": "node-a", "state": "completed"}],
                "faults": list(faults),
                **({} if patterns is None else {"patterns": patterns}),
            }
            for name in targets
        },
    }
    (run_dir / "run.json").write_text(json.dumps(manifest))
    for name, batch in targets.items():
        if batch is not None:
            write_shard([batch], shard_dir(str(run_dir), name), shard_name(0, 0))
    return run_dir


def _images(page: str) -> list[str]:
    return re.findall(r'<img[^>]*src="([^"]+)"', page)


def test_a_report_embeds_decodable_pngs_and_writes_them_beside_the_page(tmp_path):
    run = _write_run(
        tmp_path / "blast-1",
        {"sync": _batch(500, fail_every=3), "async": _batch(500, fail_every=10)},
        faults=[{"at_s": 2.0, "label": "endpoint 9: latency 30s"}],
    )
    report = write_report([str(run)], run)
    assert report.html == run / "report.html"
    page = report.html.read_text()
    sources = _images(page)
    assert len(sources) == len(report.plots) == 6
    for source, path in zip(sources, report.plots, strict=True):
        assert source.startswith("data:image/png;base64,")
        embedded = base64.b64decode(source.split(",", 1)[1])
        assert embedded.startswith(PNG_MAGIC) and embedded == path.read_bytes()
        assert len(embedded) > 5_000  # a drawn plot, not an empty canvas
    # The summary table carries the figures of the rows, and ratios to the first series.
    assert "0.9000" in page and "0.6660" in page and "p99 &times;" in page
    assert "endpoint 9: latency 30s" not in page  # marks are drawn in the plots, not the text
    assert "No warnings" in page and "SPREAD" in page
    assert not list(run.glob("_*"))  # the page was published whole


@pytest.mark.parametrize(
    "case", ["no rows", "one row", "every request failed", "one target with no ok rows"]
)
def test_edge_cases_still_draw_every_plot(tmp_path, case):
    targets = {
        "no rows": {"t": None},
        "one row": {"t": _batch(1)},
        "every request failed": {"t": _batch(20, fail_every=1)},
        "one target with no ok rows": {"good": _batch(50), "bad": _batch(50, fail_every=1)},
    }[case]
    run = _write_run(tmp_path / "edge-1", targets)
    report = write_report([str(run)], run)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in report.plots)
    page = report.html.read_text()
    if case == "no rows":
        assert "no request rows were found" in page


def test_several_runs_are_compared_under_their_scenario_names(tmp_path):
    first = _write_run(tmp_path / "alpha-1", {"sync": _batch(200, fail_every=2)})
    second = _write_run(tmp_path / "beta-1", {"sync": _batch(200)})
    report = write_report([str(second), str(first)], tmp_path / "cmp")
    page = report.html.read_text()
    assert "2 runs compared" in page
    # Rows keep the order the runs were given in: the first is the ratios' baseline.
    assert page.index("<td>beta/sync</td>") < page.index("<td>alpha/sync</td>")
    assert "Run alpha-1" in page and "Run beta-1" in page


def test_windows_widen_past_600_a_series():
    assert window_ns({}) == S
    assert window_ns({"t": (T0, T0 + 990 * MS)}) == S
    assert window_ns({"t": (T0, T0 + 2970 * S), "u": (T0, T0 + S)}) == 5 * S  # 2,970 s


def test_percentile_curve_plots_numpys_nearest_rank_values(tmp_path):
    run = _write_run(tmp_path / "curve-1", {"t": _batch(1000, fail_every=7)})
    _, shards = open_runs([str(run)])
    figure = plots.percentile_curve(curves(shards, lambda shard: shard.target))
    line = figure.axes[0].lines[0]  # from the intended send time
    x, y = line.get_xdata(), line.get_ydata()
    q = 1 - 10.0 ** -np.asarray(x)
    rows = load(str(run)).rows
    values = rows[rows["ok"]]["latency_ns"].to_numpy(dtype=np.float64) / MS
    assert np.allclose(y, np.quantile(values, q, method="inverted_cdf"))
    assert y[-1] == values.max() and y[0] == values.min()


def test_fault_times_are_marked_on_the_timelines(tmp_path):
    run = _write_run(
        tmp_path / "fault-1",
        {"t": _batch(500)},
        faults=[{"at_s": 2.0, "label": "endpoint 9: latency 30s"}],
    )
    for stem in ("availability_timeline", "goodput_timeline", "latency_timeline"):
        figure = figures(*open_runs([str(run)]))[stem][1]
        marks = [ln for ax in figure.axes for ln in ax.lines if list(ln.get_xdata()) == [2.0, 2.0]]
        texts = [t.get_text() for ax in figure.axes for t in ax.texts]
        assert marks and "endpoint 9: latency 30s" in texts, stem


def test_what_the_patterns_did_is_marked_on_each_series_latency_timeline(tmp_path):
    events = [
        {"at_s": 3.0, "pattern": "breaker", "event": "opened", "count": 1, "endpoint": 9},
        {"at_s": 3.5, "pattern": "limit", "event": "changed", "count": 1, "value": 4},
        {"at_s": 4.0, "pattern": "shed", "event": "shed", "count": 7, "until_s": 4.5},
    ]
    run = _write_run(
        tmp_path / "patterns-1",
        {"t": _batch(500)},
        faults=[{"at_s": 2.0, "label": "endpoint 9: latency 30s"}],
        patterns={"counts": {"breaker.opened": 1}, "events": events, "dropped": 0},
    )
    drawn = figures(*open_runs([str(run)]))
    latency = drawn["latency_timeline"]
    texts = [t.get_text() for ax in latency[1].axes for t in ax.texts]
    # the fault, then a state change and an episode; not each move of the limit
    assert texts == ["endpoint 9: latency 30s", "breaker 9 opened", "shed x7"]
    assert "patterns did" in latency[0]
    overlaid = [t.get_text() for ax in drawn["availability_timeline"][1].axes for t in ax.texts]
    assert overlaid == ["endpoint 9: latency 30s"]  # one series' events are not everyone's


def test_report_cli_writes_the_page_and_names_bad_input(tmp_path):
    run = _write_run(tmp_path / "cli-1", {"t": _batch(100, fail_every=5)})
    ok = subprocess.run(
        [*BLASTRADIUS, "report", str(run)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == str(run / "report.html")

    missing = subprocess.run(
        [*BLASTRADIUS, "report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1 and "no run.json" in missing.stderr


def test_scenario_in_the_report_is_the_manifests(tmp_path):
    run = _write_run(tmp_path / "scn-1", {"t": _batch(10)})
    manifest = json.loads((run / "run.json").read_text())
    manifest["scenario"] = {"name": "scn", "load": {"rate": 5, "duration": "2s"}}
    (run / "run.json").write_text(json.dumps(manifest))
    page = write_report([str(run)], run).html.read_text()
    assert yaml.safe_dump(manifest["scenario"], sort_keys=False).splitlines()[1] in page


def test_timelines_count_from_the_manifests_load_start_not_the_first_row(tmp_path):
    from blastradius.analysis.report import _origins, series_timeline
    from blastradius.analysis.scan import spans

    run = _write_run(tmp_path / "late-1", {"t": _batch(200)})
    manifest = json.loads((run / "run.json").read_text())
    manifest["targets"]["t"]["start_ns"] = T0 - 3 * S  # the first row is due 3 s in
    (run / "run.json").write_text(json.dumps(manifest))
    runs, shards = open_runs([str(run)])
    origins = _origins(runs, spans(shards, lambda shard: shard.target))
    line = series_timeline(runs, shards, origins, S)
    assert line["t_s"].min() == 3.0


def test_a_lost_generator_is_warned_of_by_analyze_and_in_the_report(tmp_path):
    run = _write_run(tmp_path / "lost-1", {"t": _batch(100)})
    manifest = json.loads((run / "run.json").read_text())
    manifest["status"] = "partial"
    manifest["targets"]["t"]["generators"] = [
        {"worker": 0, "node": "node-a", "state": "completed"},
        {
            "worker": 1,
            "node": "node-b",
            "state": "lost",
            "lost_at": "2026-09-21T10:00:01.000+00:00",
            "missing": {
                "from": "2026-09-21T10:00:00.000+00:00",
                "to": "2026-09-21T10:00:09.000+00:00",
            },
        },
    ]
    (run / "run.json").write_text(json.dumps(manifest))
    analyzed = subprocess.run(
        [*BLASTRADIUS, "analyze", str(run)], capture_output=True, text=True, timeout=120
    )
    assert analyzed.returncode == 0, analyzed.stderr
    assert "generator 1 was lost at 2026-09-21T10:00:01" in analyzed.stderr
    assert "is partial" in analyzed.stderr
    page = write_report([str(run)], tmp_path / "out").html.read_text()
    assert "generator 1 was lost at 2026-09-21T10:00:01" in page


HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


def test_nothing_from_a_run_becomes_markup_in_the_report(tmp_path):
    """Every string a run can carry (scenario values, target names, URLs, error texts)
    is text in the page: parsed, it has no script and no event handler from input."""
    from html.parser import HTMLParser

    name = "t<b onmouseover=alert(3)>"  # a hand-made run directory may name anything
    run = _write_run(tmp_path / "hostile-1", {name: _batch(50)})
    manifest = json.loads((run / "run.json").read_text())
    manifest["scenario"] = {
        "name": HOSTILE,
        "targets": [{"name": name, "url": f"http://x/{HOSTILE}"}],
    }
    manifest["status"] = "partial"
    manifest["error"] = HOSTILE
    manifest["targets"][name]["urls"] = [f"http://x/?q={HOSTILE}"]
    manifest["targets"][name]["generators"].append(
        {
            "worker": 1,
            "node": HOSTILE,
            "state": "lost",
            "lost_at": HOSTILE,
            "error": HOSTILE,
            "missing": {"from": HOSTILE, "to": HOSTILE},
        }
    )
    (run / "run.json").write_text(json.dumps(manifest))
    page = write_report([str(run)], tmp_path / "out").html.read_text()

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []
            self.handlers: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)
            self.handlers += [k for k, _ in attrs if k.lower().startswith("on")]

    parsed = Tags()
    parsed.feed(page)
    assert "script" not in parsed.tags and parsed.handlers == []
    assert all(src.startswith("data:image/png;base64,") for src in _images(page))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text


def test_objectives_are_in_the_report_and_their_missed_windows_shaded(tmp_path):
    # 500 requests 10 ms apart from the load start; every 5th of the first 100 times out,
    # so the first 1 s window is at 0.8 availability, the others at 1.
    batch = _batch(100, fail_every=5)
    rest = _batch(500)
    run = _write_run(tmp_path / "slo-1", {"t": pa.concat_batches([batch, rest.slice(100)])})
    manifest = json.loads((run / "run.json").read_text())
    manifest["objectives"] = {"t": {"availability": 0.9, "p99": 1000.0, "window_ns": S}}
    (run / "run.json").write_text(json.dumps(manifest))
    drawn = figures(*open_runs([str(run)]))
    for stem, latency_missed in (("availability_timeline", False), ("latency_timeline", True)):
        figure = drawn[stem][1]
        spans = [(p.get_x(), p.get_x() + p.get_width()) for ax in figure.axes for p in ax.patches]
        if latency_missed:
            assert not spans, stem  # every latency objective was met
        else:
            assert spans == [(0.0, 1.0)], stem
    page = write_report([str(run)], tmp_path / "out").html.read_text()
    section = page.split("<h2>Objectives</h2>")[1].split("<h2>")[0]
    assert "1 of 4 not met." in section
    assert "availability per 1s &gt;= 0.9000" in section
    assert '<td class="bad">not met (windows from 0 s)</td>' in section
    assert section.count('<td class="good">met</td>') == 3
