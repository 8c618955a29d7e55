"""k8s/, checked offline: every kustomization renders; Ray documents validate strictly
against KubeRay's CRDs, built-in kinds against Kubernetes' schemas; the policies hold;
and the manifests agree with the code.

KubeRay's CRDs are data kept outside the repo: ``$KUBERAY_CRDS``, by default
``../shared/kuberay/crds`` from the project root (the files of a KubeRay release's
``config/crd/bases``).
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from blastradius.cluster.cli import build_parser
from blastradius.cluster.scenario import parse_scenario

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
CRDS = Path(os.environ.get("KUBERAY_CRDS", ROOT.parent / "shared" / "kuberay" / "crds"))
KUBERNETES_VERSION = "1.33.0"  # built-in kinds are validated against this version's schemas
KUSTOMIZATIONS = sorted(p.parent.relative_to(K8S) for p in K8S.rglob("kustomization.yaml"))
OVERLAYS = [k for k in KUSTOMIZATIONS if k.parts[0] in ("base", "overlays", "cluster")]
RAY_PORTS = {6379, 8265, 10001}

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed"
)
needs_crds = pytest.mark.skipif(
    not CRDS.is_dir(), reason=f"KubeRay's CRDs are not at {CRDS} (set KUBERAY_CRDS)"
)


@functools.cache
def _rendered(directory: Path) -> str:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / directory)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(directory: Path) -> list[dict]:
    """The documents a kustomization renders (a fresh copy each call)."""
    return [d for d in yaml.safe_load_all(_rendered(directory)) if d]


def ray_clusters(documents: list[dict]) -> list[dict]:
    """The Ray cluster specs: a RayCluster's spec, a RayJob's rayClusterSpec."""
    specs = []
    for doc in documents:
        if doc["kind"] == "RayCluster":
            specs.append(doc["spec"])
        elif doc["kind"] == "RayJob":
            specs.append(doc["spec"]["rayClusterSpec"])
    return specs


def pod_specs(documents: list[dict]) -> list[tuple[str, dict]]:
    """(where, pod spec) of every pod the documents run."""
    found = []
    for doc in documents:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Pod":
            found.append((name, doc["spec"]))
        if doc["kind"] == "RayJob" and "submitterPodTemplate" in doc["spec"]:
            found.append((f"{name} submitter", doc["spec"]["submitterPodTemplate"]["spec"]))
    for doc in documents:
        for spec in ray_clusters([doc]):
            found.append(
                (f"{doc['metadata']['name']} head", spec["headGroupSpec"]["template"]["spec"])
            )
            for group in spec["workerGroupSpecs"]:
                found.append(
                    (f"{doc['metadata']['name']} {group['groupName']}", group["template"]["spec"])
                )
    return found


def group(spec: dict, name: str) -> dict:
    return next(g for g in spec["workerGroupSpecs"] if g["groupName"] == name)


# ---- rendering and schemas ---------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=str)
def test_every_kustomization_renders(directory):
    documents = render(directory)
    assert documents and all({"apiVersion", "kind", "metadata"} <= set(d) for d in documents)


def _strict(schema: dict) -> dict:
    """A CRD's OpenAPI schema as JSON Schema where an unknown field is an error (as
    ``kubectl apply --validate=strict`` does), except where the schema keeps unknown
    fields on purpose."""
    schema = copy.deepcopy(schema)

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


@functools.cache
def _crd_validators() -> dict[str, jsonschema.Draft7Validator]:
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        # The CRDs are MBs of YAML: libyaml's loader where PyYAML has it (seconds faster).
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            key = f"{crd['spec']['group']}/{version['name']}/{kind}"
            validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def crd_errors(document: dict) -> list[str]:
    validator = _crd_validators()[f"{document['apiVersion']}/{document['kind']}"]
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def builtin_errors(document: dict) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc).splitlines()[0]]
    return []


@needs_kubectl
@needs_crds
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_ray_documents_validate_strictly_against_kuberays_crds(directory):
    documents = [d for d in render(directory) if d["apiVersion"].startswith("ray.io/")]
    assert documents
    for document in documents:
        assert crd_errors(document) == [], document["kind"]


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_built_in_kinds_validate_strictly(directory):
    documents = [d for d in render(directory) if not d["apiVersion"].startswith("ray.io/")]
    assert documents
    for document in documents:
        assert builtin_errors(document) == [], f"{document['kind']}/{document['metadata']['name']}"


@needs_kubectl
@needs_crds
def test_a_misspelled_field_is_caught_at_every_depth():
    documents = render(Path("overlays/kind"))
    job = next(d for d in documents if d["kind"] == "RayJob")
    typos = [
        ("spec", lambda d: d["spec"].__setitem__("shutdownAfterJobFinished", True)),
        (
            "container",
            lambda d: d["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"][
                "containers"
            ][0].__setitem__("volumeMount", []),
        ),
        ("auth", lambda d: d["spec"]["rayClusterSpec"]["authOptions"].__setitem__("mod", "token")),
    ]
    for where, typo in typos:
        broken = copy.deepcopy(job)
        typo(broken)
        assert crd_errors(broken), where
    wrong_type = copy.deepcopy(job)
    wrong_type["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    assert crd_errors(wrong_type)  # rayStartParams are strings
    policy = copy.deepcopy(next(d for d in documents if d["kind"] == "NetworkPolicy"))
    policy["spec"]["podSelectr"] = {}
    assert builtin_errors(policy)


# ---- policies ----------------------------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_no_ray_port_is_exposed_outside_the_cluster(directory):
    documents = render(directory)
    for doc in documents:
        if doc["kind"] == "Service" and doc["spec"].get("type") in ("LoadBalancer", "NodePort"):
            ports = {p.get("targetPort", p["port"]) for p in doc["spec"]["ports"]}
            ports |= {p["port"] for p in doc["spec"]["ports"]}
            assert not ports & RAY_PORTS, doc["metadata"]["name"]
    for spec in ray_clusters(documents):
        head = spec["headGroupSpec"]
        assert head.get("serviceType", "ClusterIP") == "ClusterIP"
        assert not head.get("enableIngress", False)


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_every_container_is_non_root_confined_and_sized(directory):
    pods = pod_specs(render(directory))
    assert pods
    for where, pod in pods:
        pod_security = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, where
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            security = {**pod_security, **container.get("securityContext", {})}
            name = f"{where} {container['name']}"
            assert security.get("runAsNonRoot") is True and security.get("runAsUser", 0) != 0, name
            assert security.get("allowPrivilegeEscalation") is False, name
            assert security.get("capabilities", {}).get("drop") == ["ALL"], name
            assert security.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
            assert security.get("readOnlyRootFilesystem") is True, name
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{name} {kind}"
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if container["name"] != "results":
                assert "/tmp" in mounts, f"{name}: a read-only root needs a writable /tmp"


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_ray_clusters_use_token_auth_and_the_pinned_ray(directory):
    pinned = ray_version_pinned()
    for spec in ray_clusters(render(directory)):
        assert spec["authOptions"] == {"mode": "token"}
        assert spec["rayVersion"] == pinned


def ray_version_pinned() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (ray,) = [d for d in pyproject["project"]["dependencies"] if d.startswith("ray[")]
    return ray.split("==", 1)[1]


def test_the_image_is_the_official_ray_image_of_the_pinned_version_and_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    image = re.search(r"^ARG RAY_IMAGE=(\S+)$", dockerfile, re.M).group(1)
    assert image == f"rayproject/ray:{ray_version_pinned()}-py311-cpu"
    final_stage = dockerfile.rsplit("\nFROM ", 1)[1]
    users = re.findall(r"^USER (\S+)$", final_stage, re.M)
    assert users and all(u.split(":")[0] not in ("0", "root") for u in users)
    assert re.search(r"pip install .*blastradius-\*\.whl", final_stage)
    assert "!pyproject.toml" in (ROOT / ".dockerignore").read_text()


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_the_cluster_shape_is_what_a_measured_run_needs(directory):
    for spec in ray_clusters(render(directory)):
        assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        loadgen = group(spec, "loadgen")
        assert loadgen["replicas"] == loadgen["minReplicas"] == loadgen["maxReplicas"] >= 2
        assert loadgen["resources"]["loadgen"] == "1"
        assert loadgen["rayStartParams"]["num-cpus"] == "1"
        pod = loadgen["template"]["spec"]
        spread = pod.get("topologySpreadConstraints", [])
        assert any(c["topologyKey"] == "kubernetes.io/hostname" for c in spread) or pod.get(
            "affinity", {}
        ).get("podAntiAffinity")
        targets = group(spec, "targets")
        assert targets["resources"]["targets"] == "1"
        assert not spec.get("enableInTreeAutoscaling", False)
    production = ray_clusters(render(Path("overlays/production")))[0]
    (spread,) = group(production, "loadgen")["template"]["spec"]["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"


@needs_kubectl
@pytest.mark.parametrize("directory", ["base", "overlays/kind", "overlays/production"])
def test_a_rayjob_runs_once_and_cleans_up(directory):
    (job,) = [d for d in render(Path(directory)) if d["kind"] == "RayJob"]
    spec = job["spec"]
    assert spec["backoffLimit"] == 0  # a retried run would replay its load
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0


def head_env(spec: dict) -> dict[str, str]:
    container = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def entrypoint_argv(job: dict) -> list[str]:
    """The RayJob's entrypoint as the head's shell runs it, with the head's env."""
    env = head_env(job["spec"]["rayClusterSpec"])
    text = re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], job["spec"]["entrypoint"])
    return shlex.split(text)


def mounted_scenario(documents: list[dict], path: str) -> dict:
    """The scenario file at ``path`` in the head, read from the ConfigMap mounted there."""
    (job,) = [d for d in documents if d["kind"] == "RayJob"]
    pod = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    for mount in pod["containers"][0]["volumeMounts"]:
        if path.startswith(mount["mountPath"] + "/"):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            config = next(
                d
                for d in documents
                if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
            )
            return yaml.safe_load(config["data"][path.removeprefix(mount["mountPath"] + "/")])
    raise AssertionError(f"{path} is not mounted in the head")


@needs_kubectl
@pytest.mark.parametrize("directory", ["base", "overlays/kind", "overlays/production"])
def test_the_entrypoint_parses_with_the_cli_and_its_scenario_validates(directory):
    documents = render(Path(directory))
    (job,) = [d for d in documents if d["kind"] == "RayJob"]
    argv = entrypoint_argv(job)
    assert argv[0] == "blastradius"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run"
    assert "://" in args.out or args.out.startswith("/")  # never relative in a Ray job
    document = mounted_scenario(documents, args.scenario)
    scenario = parse_scenario(document)
    loadgen = group(job["spec"]["rayClusterSpec"], "loadgen")
    assert scenario.generators <= loadgen["replicas"]
    if directory == "overlays/production":
        assert args.out.startswith("s3://")
        head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
        assert (
            head["containers"][0]["envFrom"]
            == loadgen["template"]["spec"]["containers"][0]["envFrom"]
        )


@needs_kubectl
def test_the_long_lived_cluster_is_the_rayjobs_cluster():
    (job,) = [d for d in render(Path("base")) if d["kind"] == "RayJob"]
    (cluster,) = [d for d in render(Path("cluster")) if d["kind"] == "RayCluster"]
    assert cluster["spec"] == job["spec"]["rayClusterSpec"]


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_network_policies_deny_by_default_and_open_only_what_a_run_needs(directory):
    policies = {
        d["metadata"]["name"]: d["spec"] for d in render(directory) if d["kind"] == "NetworkPolicy"
    }
    deny = policies.pop("blastradius-default-deny")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    ray = policies.pop("blastradius-ray")
    peer = [{"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "blastradius"}}}]
    assert ray["ingress"] == [{"from": peer}] and ray["egress"] == [{"to": peer}]
    dns = policies.pop("blastradius-dns")
    assert {p["port"] for rule in dns["egress"] for p in rule["ports"]} == {53}
    operator = policies.pop("blastradius-operator")
    assert [p["port"] for rule in operator["ingress"] for p in rule["ports"]] == [8265]
    assert policies.pop("blastradius-user-services")["egress"] == []
    store = policies.pop("blastradius-results-store", None)
    assert (store is not None) == (directory == Path("overlays/production"))
    if store:
        assert [p["port"] for rule in store["egress"] for p in rule["ports"]] == [443]
    assert policies == {}


@needs_kubectl
@pytest.mark.parametrize("overlay", ["kind", "production"])
def test_the_monitoring_component_scrapes_every_ray_pod_and_ships_the_dashboard(overlay, tmp_path):
    """An overlay with ``components: [../../monitoring]`` (as README says): the PodMonitor
    selects every Ray pod and names a port each Ray container has (Ray's export, 8080);
    Prometheus may reach that port and no other; the dashboard ConfigMap is the file."""
    shutil.copytree(K8S, tmp_path / "k8s")
    kustomization = tmp_path / "k8s" / "overlays" / overlay / "kustomization.yaml"
    with kustomization.open("a") as out:
        out.write("components: [../../monitoring]\n")
    result = subprocess.run(
        ["kubectl", "kustomize", str(kustomization.parent)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert {d["metadata"].get("namespace") for d in documents if d["kind"] != "Namespace"} == {
        "blastradius"
    }
    (monitor,) = [d for d in documents if d["kind"] == "PodMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for spec in ray_clusters(documents):
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for each in groups:
            template = each["template"]
            assert selector.items() <= template["metadata"]["labels"].items()
            (container,) = [
                c for c in template["spec"]["containers"] if c["name"].startswith("ray")
            ]
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert ports.get(endpoint["port"]) == 8080, each.get("groupName", "head")
    (policy,) = [d for d in documents if d["metadata"]["name"] == "blastradius-metrics"]
    assert builtin_errors(policy) == []
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    (dashboard,) = [
        d
        for d in documents
        if d["kind"] == "ConfigMap" and "grafana_dashboard" in d["metadata"].get("labels", {})
    ]
    assert builtin_errors(dashboard) == []
    shipped = (K8S / "monitoring" / "grafana-dashboard.json").read_text()
    assert dashboard["data"]["blastradius.json"] == shipped


# ---- the manifests and the code agree, run for real ----------------------------------------


@needs_kubectl
def test_the_kind_rayjob_runs_as_rendered_on_a_ray_cluster_of_its_shape(tmp_path):
    """A local Ray cluster shaped like the kind overlay's (the head's and each worker
    group's CPUs and resources, replicas of each) runs the RayJob's entrypoint exactly as
    rendered, against the ConfigMap's scenario, with a shorter duration: the rows come
    from the two loadgen nodes and nowhere else, the services run on the targets node."""
    import json

    import pandas as pd
    import ray
    from ray.cluster_utils import Cluster

    documents = render(Path("overlays/kind"))
    (job,) = [d for d in documents if d["kind"] == "RayJob"]
    spec = job["spec"]["rayClusterSpec"]
    argv = entrypoint_argv(job)
    args = build_parser().parse_args(argv[1:])
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump(mounted_scenario(documents, args.scenario)))
    out = tmp_path / args.out.lstrip("/")  # the head's /results, here
    argv = [str(scenario) if a == args.scenario else str(out) if a == args.out else a for a in argv]

    def node_args(params: dict, resources: dict) -> dict:
        return {
            "num_cpus": int(params["num-cpus"]),
            "resources": {k: float(v) for k, v in resources.items()},
        }

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **node_args(spec["headGroupSpec"]["rayStartParams"], {}),
            "include_dashboard": False,
        },
    )
    groups: dict[str, list[str]] = {}
    try:
        for each in spec["workerGroupSpecs"]:
            for _ in range(each["replicas"]):
                node = cluster.add_node(**node_args(each["rayStartParams"], each["resources"]))
                groups.setdefault(each["groupName"], []).append(node.node_id)
        cluster.wait_for_nodes()
        env = {
            **os.environ,
            "RAY_ADDRESS": cluster.address,
            "RAY_JOB_CONFIG_JSON_ENV_VAR": "{}",  # as Ray's job supervisor sets
        }
        result = subprocess.run(
            [shutil.which("blastradius") or "blastradius", *argv[1:], "--set", "load.duration=3s"],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=tmp_path,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = Path(result.stdout.strip().splitlines()[-1])
    assert run_dir.parent == out
    rows = pd.read_parquet(run_dir / "requests")
    assert len(rows) == 2 * 3 * 200  # two targets, 3 s at 200/s
    assert set(rows["node"]) == set(groups["loadgen"])
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["services"]["node"] in groups["targets"]
    for target in manifest["targets"].values():
        assert {g["node"] for g in target["generators"]} == set(groups["loadgen"])
