"""Measurement: what each pod of the kind RayJob uses, run as KubeRay runs it.

    python benchmarks/k8s_sizing.py [--repeat 3] [--json FILE]      (as root)

Root only (Linux namespaces, cgroups). Renders ``k8s/overlays/kind`` and runs its RayJob
on this machine's emulated kubelet and operator (tests/kubelet.py, tests/kuberay.py),
with the overlay's own scenario (k8s/common/scenario.yaml) unchanged, ``--repeat``
times. Each pod runs in a cgroup of its manifest's limits; from each run, per pod: the
peak working set (memory usage less inactive file pages, what the kubelet's eviction and
``kubectl top`` count, sampled every 250 ms), its CPU time and the time its CPU limit
throttled it, and the job's wall time. Printed per pod kind (head, loadgen, targets,
submitter, results reader): the highest peak over the runs and pods of that kind, and
the median CPU; the figures README's sizing table and the kind overlay's requests =
limits come from. (Cgroups charge a page of a shared file to the pod that read it first,
as on a node where pods share an image: a pod's figure counts its own memory, its
tmpfs, and the file pages it was first to read.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))

import kubelet  # noqa: E402
import kuberay  # noqa: E402
import yaml  # noqa: E402
from spread import median_range  # noqa: E402

MIB = 2**20


def render() -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "k8s" / "overlays" / "kind")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kind_of(pod: kubelet.Pod) -> str:
    group = pod.labels.get("ray.io/group")
    if group == "headgroup":
        return "head"
    return group or pod.labels.get("app.kubernetes.io/component", pod.name)


def one_run() -> dict:
    documents = render()
    with (
        tempfile.TemporaryDirectory(prefix="k8s-sizing-") as root,
        kubelet.node(Path(root), documents) as node,
    ):
        reader_doc = next(d for d in documents if d["kind"] == "Pod")
        reader = node.start(reader_doc["metadata"]["name"], {}, reader_doc["spec"])
        job = kuberay.RayJob(node, next(d for d in documents if d["kind"] == "RayJob"))
        started = time.monotonic()
        job.start()
        status = job.wait(timeout_s=900)
        wall = time.monotonic() - started
        job.finish()
        node.delete(job.submitter, grace_s=1)  # done: its figures are final once deleted
        node.delete(reader, grace_s=1)
        pods = [*job.cluster.pods, job.submitter, reader]
        limits = {}
        for pod in pods:
            memory, cpu = kubelet._limits(pod.spec)
            limits[pod.name] = {"memory_mib": memory / MIB if memory else None, "cpu": cpu}
        return {
            "status": status,
            "wall_s": round(wall, 1),
            "pods": [
                {
                    "pod": kind_of(pod),
                    "peak_working_set_mib": round(pod.peak_working_set / MIB, 1),
                    "cpu_s": round(pod.cpu_seconds, 2),
                    "throttled_s": round(pod.throttled_s, 2),
                    "limit_memory_mib": limits[pod.name]["memory_mib"],
                    "limit_cpu": limits[pod.name]["cpu"],
                }
                for pod in pods
            ],
        }


def summarize(runs: list[dict]) -> dict[str, dict]:
    kinds: dict[str, dict] = {}
    for run in runs:
        for pod in run["pods"]:
            entry = kinds.setdefault(pod["pod"], {"peaks": [], "cpu": [], "throttled": []})
            entry["peaks"].append(pod["peak_working_set_mib"])
            entry["cpu"].append(pod["cpu_s"])
            entry["throttled"].append(pod["throttled_s"])
            entry["limit_memory_mib"] = pod["limit_memory_mib"]
            entry["limit_cpu"] = pod["limit_cpu"]
    return {
        kind: {
            "peak_working_set_mib_max": max(e["peaks"]),
            "cpu_s_median": median_range(e["cpu"])[0],
            "throttled_s_max": max(e["throttled"]),
            "limit_memory_mib": e["limit_memory_mib"],
            "limit_cpu": e["limit_cpu"],
        }
        for kind, e in kinds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs = []
    for index in range(args.repeat):
        run = one_run()
        print(f"run {index + 1}: {run['status']} in {run['wall_s']} s", flush=True)
        assert run["status"] == "SUCCEEDED", run
        runs.append(run)
    summary = summarize(runs)
    header = ("pod", "peak MiB", "limit MiB", "CPU s", "limit CPU", "throttled s")
    print(f"{header[0]:<10} {header[1]:>9} {header[2]:>10} {header[3]:>7} ", end="")
    print(f"{header[4]:>10} {header[5]:>12}")
    for kind, figures in summary.items():
        print(
            f"{kind:<10} {figures['peak_working_set_mib_max']:>9.0f} "
            f"{figures['limit_memory_mib'] or 0:>10.0f} {figures['cpu_s_median']:>7.1f} "
            f"{figures['limit_cpu'] or 0:>10.2f} {figures['throttled_s_max']:>12.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
