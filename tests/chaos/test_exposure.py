"""Nothing a run starts listens beyond loopback: the embedded Ray, the driver, the
generators, the collector and the launched services, listed while the run goes."""

import json
import signal
from urllib.parse import urlsplit

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


def test_every_socket_a_run_listens_on_is_on_loopback(tmp_path):
    document = {
        "name": "exposure",
        "load": {"rate": 50, "duration": "60s", "timeout": "1s"},
        "generators": 1,
        "dependency": {"latency": "1*3"},
        "targets": [{"name": "async", "kind": "async"}],
    }
    with running(tmp_path, document) as run:
        run.line("async:")  # the first progress line: everything is up
        sockets = listening(run.process.pid)
        run.signal_group(signal.SIGINT)
        _, _, run_dir = run.end()
    assert len(sockets) >= 5  # Ray's processes, the actors, the two services
    assert {ip for _, ip, _ in sockets} <= LOOPBACK, sorted(sockets)
    services = json.loads((run_dir / "run.json").read_text())["services"]["urls"]
    ports = {port for _, _, port in sockets}
    assert {urlsplit(url).port for url in services.values()} <= ports
