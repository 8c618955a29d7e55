"""k8s/, checked offline: every kustomization renders; Ray documents validate strictly
against the CRDs of both KubeRay versions we support, built-in kinds against
Kubernetes' schemas; the policies allow what a run needs on real clusters and nothing
else; the entrypoint survives the operator's shells; the sizes are consistent. (The
manifests run as KubeRay runs them in tests/test_kuberay.py.)

KubeRay's CRDs are data kept outside the repo: ``$KUBERAY_DIR``, by default
``../shared/kuberay`` from the project root, with 1.7.0's in ``crds/`` and 1.5.1's
(the oldest with token auth) in ``v1.5.1/crds/``.
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
import kuberay
import netpol
import pytest
import yaml
from kubelet import quantity

from blastradius.cluster.cli import build_parser
from blastradius.cluster.scenario import parse_scenario

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KUBERAY = Path(os.environ.get("KUBERAY_DIR", ROOT.parent / "shared" / "kuberay"))
CRD_VERSIONS = {"1.7.0": KUBERAY / "crds", "1.5.1": KUBERAY / "v1.5.1" / "crds"}
KUBERNETES_VERSION = "1.33.0"  # built-in kinds are validated against this version's schemas
KUSTOMIZATIONS = sorted(p.parent.relative_to(K8S) for p in K8S.rglob("kustomization.yaml"))
OVERLAYS = [k for k in KUSTOMIZATIONS if k.parts[0] in ("base", "overlays", "cluster")]
JOBS = [Path("base"), Path("overlays/kind"), Path("overlays/production")]
RAY_PORTS = {6379, 8265, 10001}

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) is not installed"
)
needs_crds = pytest.mark.skipif(
    not all(d.is_dir() for d in CRD_VERSIONS.values()),
    reason=f"KubeRay's CRDs are not under {KUBERAY} (set KUBERAY_DIR)",
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
def _crd_validators(version: str) -> dict[str, jsonschema.Draft7Validator]:
    validators = {}
    for path in sorted(CRD_VERSIONS[version].glob("*.yaml")):
        # The CRDs are MBs of YAML: libyaml's loader where PyYAML has it (seconds faster).
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        kind = crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            key = f"{crd['spec']['group']}/{version['name']}/{kind}"
            validators[key] = jsonschema.Draft7Validator(schema)
    return validators


def crd_errors(document: dict, version: str = "1.5.1") -> list[str]:
    validator = _crd_validators(version)[f"{document['apiVersion']}/{document['kind']}"]
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
@pytest.mark.parametrize("version", CRD_VERSIONS)
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_ray_documents_validate_strictly_against_both_kuberays_crds(directory, version):
    """A field only a newer KubeRay knows passes 1.7.0 and fails on a 1.5.1 cluster."""
    documents = [d for d in render(directory) if d["apiVersion"].startswith("ray.io/")]
    assert documents
    for document in documents:
        assert crd_errors(document, version) == [], document["kind"]


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
        for version in CRD_VERSIONS:
            assert crd_errors(broken, version), (where, version)
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


def head_env(spec: dict) -> dict[str, str]:
    container = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def submitter_env(job: dict) -> dict[str, str]:
    """What the operator gives the submitter container (plain values; the token is a
    Secret's, any non-empty string here)."""
    plan = kuberay.submitter_pod(job, "blastradius-x1y2z", "head-svc:8265", "blastradius-a1b2c")
    env = {"PATH": os.environ["PATH"], "HOME": "/home/ray"}
    for item in plan.spec["containers"][0]["env"]:
        env[item["name"]] = item.get("value", "a-token")
    return env


def entrypoint_at_the_head(job: dict) -> list[str]:
    """The entrypoint's words as the head's job supervisor runs them: expanded by the
    submitter's bash, in its environment, in the word position the operator's command
    gives it (``ray job submit ... -- ENTRYPOINT ;``), then joined by ``ray job submit``
    (``shlex.join``) and split again by the head's ``/bin/sh``."""
    entrypoint = job["spec"]["entrypoint"].strip()
    command = kuberay.job_submit_command(job, "head-svc:8265", "blastradius-a1b2c")
    assert f" -- {entrypoint} ; fi ; " in command  # where bash meets it
    words = (
        subprocess.run(
            ["/bin/bash", "-ce", "--", f"printf '%s\\0' {entrypoint} ;"],
            env=submitter_env(job),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")[:-1]
    )
    return shlex.split(shlex.join(words))


def mounted_scenario(documents: list[dict], path: str) -> dict:
    """The scenario file at ``path`` in the head, read from the ConfigMap mounted there."""
    (spec,) = ray_clusters(documents)
    pod = spec["headGroupSpec"]["template"]["spec"]
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
@pytest.mark.parametrize("directory", JOBS, ids=str)
def test_the_entrypoint_reaches_the_head_unchanged_with_no_flag_empty(directory):
    """Through the submitter's bash and Ray's re-quoting the head gets the entrypoint's
    own words, none empty; runs go to the head's $BLASTRADIUS_OUT, absolute or a URI;
    the mounted scenario validates and needs no more generators than loadgen has."""
    documents = render(directory)
    (job,) = [d for d in documents if d["kind"] == "RayJob"]
    argv = entrypoint_at_the_head(job)
    assert argv == shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "blastradius" and all(argv)
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.out is None
    out = head_env(job["spec"]["rayClusterSpec"])["BLASTRADIUS_OUT"]
    assert "://" in out or out.startswith("/")  # never relative in a Ray job
    scenario = parse_scenario(mounted_scenario(documents, args.scenario))
    loadgen = group(job["spec"]["rayClusterSpec"], "loadgen")
    assert scenario.generators <= loadgen["replicas"]


@needs_kubectl
def test_a_shell_word_in_the_entrypoint_is_expanded_by_the_submitter_not_the_head():
    """Why the entrypoint has none: with the entrypoint every overlay had before, the
    variable (set only in the head) is expanded by the submitter's bash to an empty
    argument, and Ray quotes that for the head: the run got ``--out ''`` and exited 2."""
    (job,) = [d for d in render(Path("overlays/kind")) if d["kind"] == "RayJob"]
    job["spec"]["entrypoint"] = (
        'blastradius run /etc/blastradius/scenario.yaml --out "$BLASTRADIUS_OUT"'
    )
    assert entrypoint_at_the_head(job)[-2:] == ["--out", ""]


@needs_kubectl
@pytest.mark.parametrize("directory", JOBS, ids=str)
def test_a_rayjob_runs_once_and_cleans_up(directory):
    (job,) = [d for d in render(directory) if d["kind"] == "RayJob"]
    spec = job["spec"]
    assert spec["backoffLimit"] == 0  # a retried run would replay its load
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0 and spec["activeDeadlineSeconds"] > 0


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_runs_outlive_the_ray_cluster_in_every_shape(directory):
    """The head writes runs to a claim the same kustomization creates (base and the
    long-lived cluster alone keep their rows), or, in production, to an object store
    written by the generators too, with no claim left behind."""
    documents = render(directory)
    (spec,) = ray_clusters(documents)
    head = spec["headGroupSpec"]["template"]["spec"]
    out = head_env(spec)["BLASTRADIUS_OUT"]
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    if directory == Path("overlays/production"):
        assert out.startswith("s3://") and not claims
        assert all("persistentVolumeClaim" not in v for v in head["volumes"])
        loadgen = group(spec, "loadgen")["template"]["spec"]["containers"][0]
        assert head["containers"][0]["envFrom"] == loadgen["envFrom"]
        return
    (mount,) = [m for m in head["containers"][0]["volumeMounts"] if m["mountPath"] == out]
    (volume,) = [v for v in head["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] in claims
    readers = [d for d in documents if d["kind"] == "Pod"]
    for reader in readers:  # kind: the pod kubectl cp reads the claim through
        (mounted,) = reader["spec"]["volumes"]
        assert mounted["persistentVolumeClaim"] == {
            "claimName": volume["persistentVolumeClaim"]["claimName"],
            "readOnly": True,
        }
    assert bool(readers) == (directory == Path("overlays/kind"))


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_every_ray_pod_is_sized_so_ray_does_not_guess(directory):
    """Requests = limits (Ray's guidance); an object store of a fixed size that fits in
    /dev/shm (else Ray moves it to disk); workers drain on SIGTERM for less than their
    grace period, and the head stops its jobs before Ray's own SIGTERM."""
    for spec in ray_clusters(render(directory)):
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        for each in groups:
            name = each.get("groupName", "head")
            pod = each["template"]["spec"]
            container = pod["containers"][0]
            resources = container["resources"]
            assert resources["requests"] == resources["limits"], name
            store = int(each["rayStartParams"]["object-store-memory"])
            (shm,) = [v for v in pod["volumes"] if v.get("emptyDir", {}).get("medium") == "Memory"]
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts[shm["name"]] == "/dev/shm", name
            shm_size = quantity(shm["emptyDir"]["sizeLimit"])
            assert store < shm_size < quantity(resources["limits"]["memory"]), name
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if name == "head":
                assert "preStop" in container["lifecycle"]
            else:
                drain = float(env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"])
                assert 0 < drain < pod["terminationGracePeriodSeconds"], name


@needs_kubectl
def test_the_long_lived_cluster_is_the_rayjobs_cluster():
    (job,) = [d for d in render(Path("base")) if d["kind"] == "RayJob"]
    (cluster,) = [d for d in render(Path("cluster")) if d["kind"] == "RayCluster"]
    assert cluster["spec"] == job["spec"]["rayClusterSpec"]


NS = "blastradius"
RUN = {"app.kubernetes.io/part-of": "blastradius"}
HEAD = netpol.Pod(NS, {**RUN, "app.kubernetes.io/component": "head"})
LOADGEN = netpol.Pod(NS, {**RUN, "app.kubernetes.io/component": "loadgen"})
TARGETS = netpol.Pod(NS, {**RUN, "app.kubernetes.io/component": "targets"})
SUBMITTER = netpol.Pod(NS, {**RUN, "app.kubernetes.io/component": "submitter"})
OPERATOR_HELM = netpol.Pod(
    "kuberay-system",
    {
        "app.kubernetes.io/name": "kuberay-operator",
        "app.kubernetes.io/component": "kuberay-operator",
    },
)
OPERATOR_KUSTOMIZE = netpol.Pod(
    "ray-system",
    {"app.kubernetes.io/name": "kuberay", "app.kubernetes.io/component": "kuberay-operator"},
)
# What KubeRay labels another team's Ray pod with.
OTHER_RAY_POD = netpol.Pod(
    "other-team",
    {"app.kubernetes.io/name": "kuberay", "app.kubernetes.io/created-by": "kuberay-operator"},
)
COREDNS = netpol.Pod("kube-system", {"k8s-app": "kube-dns"})
NODELOCAL_DNS = netpol.Address("169.254.20.10")
OPENSHIFT_DNS = netpol.Pod("openshift-dns", {"dns.operator.openshift.io/daemonset-dns": "default"})
PROMETHEUS = netpol.Pod("monitoring", {"app.kubernetes.io/name": "prometheus"})
SHOP = netpol.Pod("shop", {"app": "shop"})
PAYMENTS = netpol.Pod("payments", {"app": "payments"})


@needs_kubectl
@pytest.mark.parametrize("directory", OVERLAYS, ids=str)
def test_network_policies_let_a_run_work_on_real_clusters_and_nothing_else_in(directory):
    policies = [d for d in render(directory) if d["kind"] == "NetworkPolicy"]
    ok = functools.partial(netpol.allowed, policies)
    # Ray between the run's pods, generators to the targets, the submitter to the head.
    assert ok(LOADGEN, HEAD, 6379) and ok(TARGETS, HEAD, 6379) and ok(HEAD, LOADGEN, 10002)
    assert ok(LOADGEN, TARGETS, 41234) and ok(SUBMITTER, HEAD, 8265)
    # DNS, wherever the cluster serves it.
    for pod in (HEAD, LOADGEN, TARGETS, SUBMITTER):
        assert ok(pod, COREDNS, 53, "UDP") and ok(pod, COREDNS, 53, "TCP")
        assert ok(pod, NODELOCAL_DNS, 53, "UDP")
        assert ok(pod, OPENSHIFT_DNS, 5353, "UDP")
    # The operator, installed by Helm or by kustomize, to the job server only.
    for operator in (OPERATOR_HELM, OPERATOR_KUSTOMIZE):
        assert ok(operator, HEAD, 8265)
        assert not ok(operator, HEAD, 6379) and not ok(operator, LOADGEN, 8265)
    # Nothing else in: another cluster's Ray pods, Prometheus (without the component).
    for port in (6379, 8265, 10001, 8080):
        assert not ok(OTHER_RAY_POD, HEAD, port) and not ok(PROMETHEUS, HEAD, port)
    # Nothing out to your services or a proxy's upstream until you allow it.
    assert not ok(LOADGEN, SHOP, 8080) and not ok(TARGETS, PAYMENTS, 8080)
    assert not ok(HEAD, netpol.Address("52.216.0.10"), 443) or directory == Path(
        "overlays/production"
    )


def _isolating(
    direction: str, rules: list | None = None, pods: dict | None = None, namespace: str = NS
) -> list[dict]:
    """One policy of ``namespace`` isolating ``pods`` (all) in ``direction``, with rules."""
    spec = {"podSelector": pods or {}, "policyTypes": [direction]}
    if rules is not None:
        spec[direction.lower()] = rules
    return [
        {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}
    ]


APP_A = netpol.Pod(NS, {"app": "a"})
APP_B = netpol.Pod(NS, {"app": "b"})
ELSEWHERE_B = netpol.Pod("elsewhere", {"app": "b"})
OUT = netpol.Address("10.2.3.4")


def from_any_namespace(app: str) -> dict:
    return {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": app}}}


TENS = [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}]}]


@pytest.mark.parametrize(
    ("policies", "source", "destination", "port", "protocol", "expected"),
    [
        ([], APP_A, APP_B, 80, "TCP", True),  # no policy: nothing is isolated
        (_isolating("Ingress"), APP_A, APP_B, 80, "TCP", False),
        (_isolating("Ingress"), APP_A, OUT, 80, "TCP", True),  # ingress says nothing of out
        (_isolating("Egress", pods={"matchLabels": {"app": "a"}}), APP_A, OUT, 80, "TCP", False),
        (_isolating("Egress", pods={"matchLabels": {"app": "a"}}), APP_B, OUT, 80, "TCP", True),
        # A podSelector alone means the policy's own namespace.
        (
            _isolating("Ingress", [{"from": [{"podSelector": {}}]}]),
            ELSEWHERE_B,
            APP_A,
            80,
            "TCP",
            False,
        ),
        (_isolating("Ingress", [{"from": [{"podSelector": {}}]}]), APP_B, APP_A, 80, "TCP", True),
        # namespaceSelector and podSelector in one peer: both must hold.
        (
            _isolating("Ingress", [{"from": [from_any_namespace("c")]}]),
            ELSEWHERE_B,
            APP_A,
            80,
            "TCP",
            False,
        ),
        (
            _isolating("Ingress", [{"from": [from_any_namespace("b")]}]),
            ELSEWHERE_B,
            APP_A,
            80,
            "TCP",
            True,
        ),
        # Ports: the protocol defaults to TCP; endPort makes a range.
        (_isolating("Ingress", [{"ports": [{"port": 53}]}]), APP_B, APP_A, 53, "TCP", True),
        (_isolating("Ingress", [{"ports": [{"port": 53}]}]), APP_B, APP_A, 53, "UDP", False),
        (
            _isolating("Ingress", [{"ports": [{"port": 80, "endPort": 90}]}]),
            APP_B,
            APP_A,
            85,
            "TCP",
            True,
        ),
        (
            _isolating("Ingress", [{"ports": [{"port": 80, "endPort": 90}]}]),
            APP_B,
            APP_A,
            91,
            "TCP",
            False,
        ),
        # ipBlock, with its exceptions.
        (_isolating("Egress", TENS), APP_A, OUT, 80, "TCP", True),
        (_isolating("Egress", TENS), APP_A, netpol.Address("10.1.3.4"), 80, "TCP", False),
        # matchExpressions.
        (
            _isolating(
                "Ingress",
                pods={"matchExpressions": [{"key": "app", "operator": "In", "values": ["a"]}]},
            ),
            APP_B,
            APP_A,
            80,
            "TCP",
            False,
        ),
        (
            _isolating(
                "Ingress",
                pods={"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["a"]}]},
            ),
            APP_B,
            APP_A,
            80,
            "TCP",
            True,
        ),
        # A policy of another namespace does not apply.
        (_isolating("Ingress", namespace="elsewhere"), APP_A, APP_B, 80, "TCP", True),
    ],
)
def test_the_policy_judge_follows_kubernetes_rules(
    policies, source, destination, port, protocol, expected
):
    assert netpol.allowed(policies, source, destination, port, protocol) is expected


def _with_rule(policies: list[dict], name: str, rule: dict) -> list[dict]:
    policies = copy.deepcopy(policies)
    (policy,) = [p for p in policies if p["metadata"]["name"] == name]
    policy["spec"]["egress"].append(rule)
    return policies


@needs_kubectl
def test_the_documented_rules_open_exactly_your_service_and_your_proxys_upstream():
    """The example rules in the policies' comments, added as a user would."""
    policies = [d for d in render(Path("overlays/kind")) if d["kind"] == "NetworkPolicy"]
    shop = {
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}}],
        "ports": [{"protocol": "TCP", "port": 8080}],
    }
    opened = _with_rule(policies, "blastradius-user-services", shop)
    assert netpol.allowed(opened, LOADGEN, SHOP, 8080)
    assert not netpol.allowed(opened, LOADGEN, SHOP, 22)
    assert not netpol.allowed(opened, TARGETS, SHOP, 8080)
    payments = {
        **shop,
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "payments"}}}],
    }
    opened = _with_rule(policies, "blastradius-proxy-upstreams", payments)
    assert netpol.allowed(opened, TARGETS, PAYMENTS, 8080)
    assert not netpol.allowed(opened, LOADGEN, PAYMENTS, 8080)
    text = (K8S / "common" / "networkpolicy.yaml").read_text()
    assert "kubernetes.io/metadata.name: shop}}}]" in text
    assert "kubernetes.io/metadata.name: payments}}}]" in text


@needs_kubectl
@pytest.mark.parametrize("overlay", ["kind", "production"])
def test_the_metrics_port_is_reachable_only_from_the_monitoring_namespace(overlay, tmp_path):
    documents = render_with_monitoring(overlay, tmp_path)
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    for pod in (HEAD, LOADGEN, TARGETS):
        assert netpol.allowed(policies, PROMETHEUS, pod, 8080)
        assert not netpol.allowed(policies, PROMETHEUS, pod, 8265)
        assert not netpol.allowed(policies, SHOP, pod, 8080)
        assert not netpol.allowed(policies, OTHER_RAY_POD, pod, 8080)


def render_with_monitoring(overlay: str, tmp_path: Path) -> list[dict]:
    """An overlay with ``components: [../../monitoring]``, as README says to add it."""
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
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@needs_kubectl
@pytest.mark.parametrize("overlay", ["kind", "production"])
def test_the_monitoring_component_scrapes_every_ray_pod_and_ships_the_dashboard(overlay, tmp_path):
    """An overlay with ``components: [../../monitoring]`` (as README says): the PodMonitor
    selects every Ray pod and names a port each Ray container has (Ray's export, 8080);
    Prometheus may reach that port and no other; the dashboard ConfigMap is the file."""
    documents = render_with_monitoring(overlay, tmp_path)
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
