"""k8s/, run as KubeRay v1.5.1 runs it (tests/kuberay.py) on pods of this machine
(tests/kubelet.py): the kind RayJob to its rows in pandas, its deletion mid-run, and the
long-lived cluster with README's own commands. Slow (a Ray cluster of four pods each),
and root-only: skipped with the reason elsewhere.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import kubelet
import kuberay
import pandas as pd
import pytest
import yaml
from waits import wait_for

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    bool(kubelet.available()) or shutil.which("kubectl") is None,
    reason=kubelet.available() or "kubectl (with kustomize) is not installed",
)


def render(directory: str, duration: str) -> list[dict]:
    """The kustomization's documents, its scenario cut to ``duration`` per target (as a
    user edits k8s/common/scenario.yaml)."""
    result = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / directory)],
        capture_output=True,
        text=True,
        check=True,
    )
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    for document in documents:
        if document["kind"] == "ConfigMap" and "scenario.yaml" in document.get("data", {}):
            scenario = yaml.safe_load(document["data"]["scenario.yaml"])
            scenario["load"]["duration"] = duration
            document["data"]["scenario.yaml"] = yaml.safe_dump(scenario)
    return documents


def one(documents: list[dict], kind: str) -> dict:
    (found,) = [d for d in documents if d["kind"] == kind]
    return found


def readme_commands(first: str) -> list[str]:
    """The commands of README's shell block holding ``first``, continuation lines
    joined, comments dropped."""
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        if first in block:
            joined = block.replace("\\\n", " ")
            return [re.sub(r"\s+#.*$", "", line).strip() for line in joined.splitlines()]
    raise AssertionError(f"README has no shell block with {first!r}")


def kubectl_cp(pod: kubelet.Pod, path: str, destination: Path) -> None:
    """``kubectl cp POD:PATH DEST``: tar in the pod, untarred here."""
    tar = pod.exec(["tar", "cf", "-", "-C", path, "."], text=False)
    assert tar.returncode == 0, tar.stderr
    destination.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(tar.stdout)) as archive:
        archive.extractall(destination, filter="data")


def ray_nodes(cluster: kuberay.RayCluster) -> dict[str, str]:
    """Ray's node id of each pod, from the state API (by the pod's address)."""
    code, body = cluster.request("/api/v0/nodes?limit=100")
    assert code == 200, body
    by_ip = {n["node_ip"]: n["node_id"] for n in json.loads(body)["data"]["result"]["result"]}
    return {pod.name: by_ip[pod.ip] for pod in cluster.pods}


def no_store_on_disk(pods: list[kubelet.Pod]) -> None:
    for pod in pods:
        assert "object store is using" not in pod.container().logs(), pod.name


def load_started(cluster: kuberay.RayCluster, job_id: str) -> None:
    """Until the job's first target has sent for two seconds (failing if the job ends)."""

    def look() -> tuple[str, str]:
        code, body = cluster.request(f"/api/jobs/{job_id}")
        status = json.loads(body)["status"] if code == 200 else ""
        return status, cluster.request(f"/api/jobs/{job_id}/logs")[1].decode()

    status, logs = wait_for(
        look,
        lambda seen: seen[0] in kuberay.TERMINAL or re.search(r":\s+2\.\ds\s+sent", seen[1]),
        timeout_s=300,
    )
    assert status not in kuberay.TERMINAL, logs


def flushed(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    """The run's manifest, and its rows, which must be every row its generators said
    they sent."""
    manifest = json.loads((run_dir / "run.json").read_text())
    rows = pd.read_parquet(run_dir / "requests")
    for name, target in manifest["targets"].items():
        for generator in target["generators"]:
            mine = rows[(rows["target"] == name) & (rows["worker"] == generator["worker"])]
            assert len(mine) == generator["rows"], (name, generator)
    return manifest, rows


@pytest.fixture
def node(tmp_path: Path) -> Iterator[kubelet.Node]:
    with kubelet.node(tmp_path / "node") as made:
        yield made


def test_the_kind_rayjob_completes_and_its_rows_reach_pandas_on_the_laptop(node, tmp_path):
    documents = render("overlays/kind", "2s")
    for document in documents:
        node.add(document)
    commands = readme_commands("kubectl apply -k k8s/overlays/kind")
    assert "kubectl apply -k k8s/overlays/kind" in commands
    reader_spec = one(documents, "Pod")
    reader = node.start(reader_spec["metadata"]["name"], {}, reader_spec["spec"])
    job = kuberay.RayJob(node, one(documents, "RayJob"))
    job.start()
    assert job.wait(timeout_s=400) == "SUCCEEDED", job.logs()
    nodes = ray_nodes(job.cluster)
    groups = {p.name: p.labels["ray.io/group"] for p in job.cluster.pods}
    no_store_on_disk(job.cluster.pods)
    job.finish()
    assert job.submitter.container().process.returncode == 0, job.logs()
    # The run's last line, its directory, among the submitter's own (`ray job logs`).
    (run_dir,) = map(Path, re.findall(r"^(/results/\S+)$", job.logs(), re.M))
    assert run_dir.parent == Path("/results")
    on_claim = node.claim_directory("blastradius-results") / run_dir.name
    manifest, rows = flushed(on_claim)
    assert manifest["status"] == "completed" and len(rows) == 2 * 2 * 200
    loadgen = {nodes[p] for p, g in groups.items() if g == "loadgen"}
    assert set(rows["node"]) == loadgen and len(loadgen) == 2
    assert manifest["services"]["node"] in {nodes[p] for p, g in groups.items() if g == "targets"}

    # README's last three lines, on the laptop: copy the runs out, analyze, pandas.
    assert "kubectl -n blastradius cp blastradius-results:/results ./k8s-runs" in commands
    kubectl_cp(reader, "/results", tmp_path / "k8s-runs")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for command in commands[commands.index("blastradius analyze k8s-runs") :]:
        done = subprocess.run(
            command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "blocking" in done.stdout and "async" in done.stdout


def test_deleting_the_rayjob_mid_run_interrupts_it_with_every_row_flushed(node):
    """The operator's finalizer stops the job, then its cluster's pods all go at once:
    the driver still stops the load, flushes and marks the run interrupted."""
    documents = render("overlays/kind", "60s")
    for document in documents:
        node.add(document)
    job = kuberay.RayJob(node, one(documents, "RayJob"))
    job.start()
    load_started(job.cluster, job.job_id)
    ended = job.delete()
    times = "; ".join(node.stop_times(p) for p in job.cluster.pods)
    ray_pods = {p.name for p in job.cluster.pods}
    assert all("killed" not in ended[p].values() for p in ray_pods), (ended, times)
    print(times)
    (run_dir,) = node.claim_directory("blastradius-results").iterdir()
    manifest, rows = flushed(run_dir)
    assert manifest["status"] == "interrupted"
    assert len(rows) > 2 * 200  # two seconds of load, and less than the 2 x 60 s planned
    assert len(rows) < 2 * 60 * 200


class PortForward:
    """``kubectl port-forward``: 127.0.0.1:PORT here to a pod's port."""

    def __init__(self, address: str, port: int) -> None:
        self.target = (address, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        with client, socket.create_connection(self.target) as upstream:
            back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
            back.start()
            self._pipe(client, upstream)
            back.join()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def http_status(url: str, token: str = "") -> int:
    import urllib.error
    import urllib.request

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10):
            return 200
    except urllib.error.HTTPError as error:
        return error.code


def token_refused(command: list[str], token: str) -> tuple[bool, bool]:
    """Whether ``command`` (a Ray call) fails without the token, and with it succeeds."""
    results = []
    for mode, value in (("disabled", ""), ("token", token)):
        env = {**os.environ, "RAY_AUTH_MODE": mode, "RAY_AUTH_TOKEN": value}
        results.append(subprocess.run(command, env=env, capture_output=True, timeout=120))
    return results[0].returncode != 0, results[1].returncode == 0


CLIENT_CALL = """
import sys, grpc
from ray.core.generated import ray_client_pb2, ray_client_pb2_grpc
from ray._private.grpc_utils import init_grpc_channel
channel = init_grpc_channel(sys.argv[1])
stub = ray_client_pb2_grpc.RayletDriverStub(channel)
ping = ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING)
stub.ClusterInfo(ping, timeout=30)
"""


def test_the_long_lived_cluster_takes_readmes_ray_job_submit_and_a_head_pod_deletion(
    node, tmp_path
):
    documents = render("cluster", "2s")
    for document in documents:
        node.add(document)
    commands = readme_commands("kubectl apply -k k8s/cluster")
    assert commands[:3] == [
        "kubectl apply -k k8s/cluster",
        "kubectl -n blastradius port-forward service/blastradius-head-svc 8265:8265 &",
        "export RAY_AUTH_MODE=token",
    ]
    cluster = kuberay.RayCluster(
        node, "blastradius", "blastradius", one(documents, "RayCluster")["spec"]
    )
    cluster.create()
    head = cluster.head
    assert kuberay.head_service(cluster.name) == "blastradius-head-svc"
    assert node.get("Secret", "blastradius")["stringData"]["auth_token"] == cluster.token
    forward = PortForward(head.ip, kuberay.DASHBOARD_PORT)
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": cluster.token,
    }
    try:
        (submit,) = [c for c in commands if c.startswith("ray job submit")]
        submit = submit.replace("127.0.0.1:8265", f"127.0.0.1:{forward.port}")
        done = subprocess.run(submit, shell=True, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

        # The run is on the claim, and README's kubectl cp of the head finds it.
        (copy,) = [c for c in commands if c.startswith("kubectl -n blastradius cp")]
        selector = re.search(r"-l (\S+)", copy).group(1)
        assert dict(kv.split("=") for kv in selector.split(",")).items() <= head.labels.items()
        kubectl_cp(head, "/results", tmp_path / "k8s-runs")
        (run_dir,) = (tmp_path / "k8s-runs").iterdir()
        manifest, rows = flushed(run_dir)
        assert manifest["status"] == "completed" and len(rows) == 2 * 2 * 200
        assert (node.claim_directory("blastradius-results") / run_dir.name).is_dir()
        analyzed = subprocess.run(
            [str(BIN / "blastradius"), "analyze", str(run_dir)], capture_output=True, text=True
        )
        assert analyzed.returncode == 0, analyzed.stderr
        assert "blocking" in analyzed.stdout and "async" in analyzed.stdout

        # What the token covers, and what it does not.
        dashboard = f"http://{head.ip}:{kuberay.DASHBOARD_PORT}"
        assert http_status(f"{dashboard}/api/version") == 401
        assert http_status(f"{dashboard}/api/jobs/") == 401
        assert http_status(f"{dashboard}/api/version", cluster.token) == 200
        for open_path in ("/api/gcs_healthz", "/"):
            assert http_status(f"{dashboard}{open_path}") == 200, open_path
        assert http_status(f"http://{head.ip}:{kuberay.METRICS_PORT}/metrics") == 200
        agent = f"http://{head.ip}:{kuberay.AGENT_PORT}"
        for open_path in ("/api/local_raylet_healthz", "/api/healthz"):
            assert http_status(f"{agent}{open_path}") == 200, open_path
        gcs = ["ray", "health-check", "--address", f"{head.ip}:{kuberay.GCS_PORT}"]
        assert token_refused([str(BIN / "ray"), *gcs[1:]], cluster.token) == (True, True)
        client = [sys.executable, "-c", CLIENT_CALL, f"{head.ip}:10001"]
        assert token_refused(client, cluster.token) == (True, True)

        # A second run, and its head pod deleted mid-run: the preStop hook stops it.
        later = submit.replace("ray job submit", "ray job submit --no-wait").replace(
            "scenario.yaml", "scenario.yaml --set load.duration=60s"
        )
        done = subprocess.run(later, shell=True, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        job_id = re.search(r"Job '([^']+)' submitted", done.stdout + done.stderr).group(1)
        load_started(cluster, job_id)
        assert node.delete(head) == {"ray-head": "exited 1"}
    finally:
        forward.close()
    runs = node.claim_directory("blastradius-results")
    (second,) = [r for r in runs.iterdir() if r.name != run_dir.name]
    manifest, rows = flushed(second)
    assert manifest["status"] == "interrupted"
    assert 2 * 200 < len(rows) < 2 * 60 * 200
