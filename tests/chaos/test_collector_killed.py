"""The shard collector (the actor writing every generator's batches) is SIGKILLed
mid-run: what it wrote stays readable, and the run fails saying what it lost. Before
that, while everything runs: every socket the run listens on is on loopback."""

import json
import signal
from urllib.parse import urlsplit

import pandas as pd
import psutil
from cli_runs import running

LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def listening(pid: int) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening socket of ``pid`` and below."""
    root = psutil.Process(pid)
    found = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            for conn in process.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add((process.name(), conn.laddr.ip, conn.laddr.port))
        except psutil.Error:
            continue  # a process that ended between the listing and the look
    return found


def test_a_killed_collector_fails_the_run_and_keeps_what_it_wrote(tmp_path):
    document = {
        "name": "collector",
        "load": {"rate": 100, "duration": "60s", "timeout": "1s"},
        "generators": 2,
        "dependency": {"latency": "1*3"},
        "targets": [{"name": "async", "kind": "async"}],
    }
    with running(tmp_path, document) as run:
        run.shards("async", at_least=2)
        sockets = listening(run.process.pid)  # Ray, the driver, the actors, the services
        (collector,) = run.ray_processes("ray::ShardCollector")
        collector.send_signal(signal.SIGKILL)
        _, stderr, run_dir = run.end()
    assert run.process.returncode == 1, stderr
    assert "Traceback" not in stderr
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("async: generator ")
    assert "ActorDiedError" in manifest["error"] or "RayActorError" in manifest["error"]
    generators = manifest["targets"]["async"]["generators"]
    assert {g["state"] for g in generators} == {"failed"}
    assert all(g["missing"]["from"] < g["missing"]["to"] for g in generators)
    assert len(sockets) >= 5 and {ip for _, ip, _ in sockets} <= LOOPBACK, sorted(sockets)
    urls = manifest["services"]["urls"].values()
    assert {urlsplit(url).port for url in urls} <= {port for _, _, port in sockets}
    rows = pd.read_parquet(run_dir / "requests")  # what it published reads whole
    assert 0 < len(rows) < 6000 and rows["ok"].all()
    assert manifest["totals"]["async"]["requests"] == len(rows)
