"""Live metrics: scraped from Ray's own Prometheus export while a run goes, and at the end
equal to the rows on disk (parsed with ``prometheus_client``'s text parser)."""

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray_heads as heads
import yaml
from prometheus_client.parser import text_string_to_metric_families
from waits import wait_for

from blastradius.workers.metrics import LAG_BOUNDS_S, LATENCY_BOUNDS_S, cumulative_counts

BLASTRADIUS = [sys.executable, "-m", "blastradius.cluster"]
DASHBOARD = Path(__file__).resolve().parent.parent / "k8s" / "monitoring" / "grafana-dashboard.json"


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """blastradius samples summed over Ray's per-process series: (name, labels) -> value
    (none while the endpoint does not answer yet: Ray's agent starts after the head)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return {}
    found: dict[tuple[str, tuple], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("ray_blastradius_"):
                continue
            mine = {k: v for k, v in sample.labels.items() if k in ("target", "kind", "le")}
            key = (sample.name, tuple(sorted(mine.items())))
            found[key] = found.get(key, 0.0) + sample.value
    return found


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((f"ray_blastradius_{name}", tuple(sorted(labels.items()))), 0.0)


def test_cumulative_bucket_counts():
    values = np.array([0.0005, 0.001, 0.0011, 0.003, 2.5, 100.0])
    assert cumulative_counts(values, (0.001, 0.002, 0.005, 1, 60)) == [2, 3, 4, 4, 5, 6]
    assert cumulative_counts(np.array([]), (0.001,)) == [0, 0]


def test_live_metrics_match_the_rows_at_the_end(tmp_path):
    scenario = {
        "name": "metrics",
        "load": {"rate": 200, "duration": "8s", "timeout": "1s"},
        "generators": 2,
        "dependency": {"latency": "5*2", "errors": "0,0.3"},  # http errors on one endpoint
        "targets": [{"name": "async", "kind": "async"}],
    }
    path = tmp_path / "metrics.yaml"
    path.write_text(yaml.safe_dump(scenario))
    with heads.ray_head({"RAY_metrics_report_interval_ms": "500"}) as head:
        run = subprocess.Popen(
            [*BLASTRADIUS, "run", str(path), "--address", head.address, "--out", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        )
        try:
            live = wait_for(
                lambda: scrape(head.metrics),
                lambda s: value(s, "requests_total", target="async") > 0,
                timeout_s=120,
            )
            assert run.poll() is None, "the run ended before its metrics were seen"
            assert ("ray_blastradius_in_flight", (("target", "async"),)) in live
        finally:
            stdout, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
        rows = pd.read_parquet(Path(stdout.strip().splitlines()[-1]) / "requests")
        final = wait_for(
            lambda: scrape(head.metrics),
            lambda s: value(s, "requests_total", target="async") == len(rows),
            timeout_s=60,
        )
    # Every series the Grafana dashboard queries is one the run exported (a gauge goes
    # with its generator's process; counters stay).
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for query in panel["targets"]
        for name in re.findall(r"ray_blastradius_\w+", query["expr"])
    }
    assert len(queried) == 6 and queried <= {name for name, _ in [*live, *final]}

    ok = rows[rows["ok"]]
    assert value(final, "ok_total", target="async") == len(ok) > 0
    errors = rows["error"].astype(str).value_counts()
    assert set(errors.index) == {"", "http"}
    assert value(final, "errors_total", target="async", kind="http") == errors["http"]
    latency_s = ok["latency_ns"].to_numpy() / 1e9
    for le, expected in zip(
        [*map(str, LATENCY_BOUNDS_S), "+Inf"],
        cumulative_counts(latency_s, LATENCY_BOUNDS_S),
        strict=True,
    ):
        le = le if le == "+Inf" else f"{float(le):g}"
        got = value(final, "latency_seconds_bucket_total", target="async", le=le)
        assert got == expected, le
    assert value(final, "latency_seconds_count_total", target="async") == len(ok)
    assert value(final, "latency_seconds_sum_total", target="async") == pytest.approx(
        latency_s.sum(), rel=1e-6
    )
    sent = rows[rows["sent_ns"].notna()]
    lag_s = np.maximum((sent["sent_ns"] - sent["intended_ns"]).to_numpy(dtype=np.int64), 0) / 1e9
    assert value(final, "send_lag_seconds_count_total", target="async") == len(sent)
    assert (
        value(final, "send_lag_seconds_bucket_total", target="async", le="0.01")
        == (cumulative_counts(lag_s, LAG_BOUNDS_S)[LAG_BOUNDS_S.index(0.01)])
    )


def test_a_batch_the_metrics_cannot_read_still_reaches_the_sink():
    from blastradius.workers.metrics import LiveMetrics
    from blastradius.workers.record import RowBuffer

    written = []
    sink = LiveMetrics("t", 0, lambda: 0).metered(written.append)
    buffer = RowBuffer(worker=0, node="n")
    buffer.add(0, 0, 10, 11, 20, 200, 0, 2)
    good = buffer.close()
    strange = good.drop_columns(["latency_ns"])  # recording it fails: metrics stop
    for batch in (good, strange, good):
        sink(batch)
    assert written == [good, strange, good]
