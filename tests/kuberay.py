"""What the KubeRay v1.5.1 operator does with a rendered RayCluster or RayJob, done on
this machine's kubelet (tests/kubelet.py).

Each step follows the operator's source (``../shared/kuberay/v1.5.1/source/``): the
head and worker pods as ``pod.go`` builds them (``DefaultHeadPodTemplate``,
``DefaultWorkerPodTemplate``, ``BuildPod``: the ``ray start`` command from
``rayStartParams``, the group's ``resources`` and the container's limits, under
``/bin/bash -c``; the injected env, ``/dev/shm``, the ``wait-gcs-ready`` init container,
the probes), the token Secret and its env (``authOptions.mode: token``), the head
Service, and for a RayJob in ``K8sJobMode`` the submitter pod whose command
``job.go``'s ``BuildJobSubmitCommand`` builds and ``rayjob_controller.go`` runs as
``/bin/bash -ce -- "..."`` with ``RAY_DASHBOARD_ADDRESS``, ``RAY_JOB_SUBMISSION_ID`` and
the token in its env. A RayJob's cluster is made Ready (every pod's readiness probe
passes) before the submitter starts; the job's status is polled from the dashboard as
the operator polls it; ``shutdownAfterJobFinishes`` deletes the cluster; deleting the
RayJob stops the job (``StopJob``) and then its cluster's pods go.

A field this emulation does not model (autoscaling, GCS fault tolerance, a runtime env,
a sidecar submitter, ...) is refused, not ignored.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
import string
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import kubelet

VERSION = "1.5.1"
DOMAIN = "cluster.local"
GCS_PORT = 6379
DASHBOARD_PORT = 8265
METRICS_PORT = 8080
AGENT_PORT = 52365
HEALTH = "wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success"
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}
UNMODELLED_CLUSTER = (
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "gcsFaultToleranceOptions",
    "headServiceAnnotations",
)
UNMODELLED_JOB = (
    "runtimeEnvYAML",
    "metadata",
    "entrypointNumCpus",
    "entrypointNumGpus",
    "entrypointResources",
    "clusterSelector",
    "suspend",
    "managedBy",
    "deletionStrategy",
)


def _suffix() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(5))


def head_service(owner: str) -> str:
    """``GenerateHeadServiceName``: the head Service of a RayCluster or RayJob."""
    return f"{owner}-head-svc"


def fqdn(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.{DOMAIN}"


# ---- pod.go, as pure functions of the spec --------------------------------------------------


def _int_value(quantity: str) -> int:
    """``resource.Quantity.Value()``: rounded up to a whole number."""
    import math

    return math.ceil(kubelet.quantity(quantity))


def param_map(params: dict[str, str]) -> str:
    """``convertParamMap``: sorted ``--key=value`` flags, ``true`` a bare flag, ``false``
    dropped (but for ``log-color`` and ``include-dashboard``)."""
    flags = ""
    for key in sorted(params):
        value = params[key]
        if value.lower() in ("true", "false") and key not in ("log-color", "include-dashboard"):
            if value.lower() == "true":
                flags += f" --{key} "
        else:
            flags += f" --{key}={value} "
    return flags


def ray_start_command(head: bool, params: dict[str, str], resources: dict) -> str:
    """``generateRayStartCommand``: CPUs and memory from the container's limits where
    ``rayStartParams`` do not give them."""
    params = dict(params)
    limits = resources.get("limits", {})
    requests = resources.get("requests", {})
    if "num-cpus" not in params:
        cpu = limits.get("cpu") or requests.get("cpu")
        if cpu:
            params["num-cpus"] = str(_int_value(cpu))
    if "memory" not in params and limits.get("memory"):
        params["memory"] = str(_int_value(limits["memory"]))
    if any("gpu" in k for k in limits):
        raise NotImplementedError("accelerators are not emulated")
    return ("ray start --head " if head else "ray start ") + param_map(params)


def _group_resources(params: dict[str, str], resources: dict[str, str]) -> None:
    """``updateRayStartParamsResources``: a group's top-level ``resources``."""
    custom = {}
    for name, value in resources.items():
        if name.lower() == "cpu":
            params["num-cpus"] = str(_int_value(value))
        elif name.lower() == "memory":
            params["memory"] = str(_int_value(value))
        else:
            custom[name] = kubelet.quantity(value)
    if custom:
        text = json.dumps(
            {k: int(v) if v == int(v) else v for k, v in custom.items()}, separators=(",", ":")
        )
        params["resources"] = f"'{text}'"


def _missing_params(params: dict[str, str], head: bool, address: str) -> None:
    """``setMissingRayStartParams``."""
    if head:
        params.setdefault("dashboard-host", "0.0.0.0")
    else:
        params.setdefault("address", address)
    params.setdefault("metrics-export-port", str(METRICS_PORT))
    params["block"] = "true"
    params.setdefault("dashboard-agent-listen-port", str(AGENT_PORT))


def _token_env(cluster: str) -> list[dict]:
    """``SetContainerTokenAuthEnvVars``."""
    return [
        {"name": "RAY_AUTH_MODE", "value": "token"},
        {
            "name": "RAY_AUTH_TOKEN",
            "valueFrom": {"secretKeyRef": {"name": cluster, "key": "auth_token"}},
        },
    ]


def _labels(head: bool, cluster: str, group: str, template: dict) -> dict[str, str]:
    """``labelPod``: KubeRay's labels, then the template's (but for three)."""
    labels = {
        "ray.io/is-ray-node": "yes",
        "ray.io/cluster": cluster,
        "ray.io/node-type": "head" if head else "worker",
        "ray.io/group": group,
        "ray.io/identifier": f"{cluster}-{'head' if head else 'worker'}",
        "app.kubernetes.io/name": "kuberay",
        "app.kubernetes.io/created-by": "kuberay-operator",
    }
    for key, value in template.get("metadata", {}).get("labels", {}).items():
        if key not in ("ray.io/node-type", "ray.io/group", "ray.io/cluster"):
            labels[key] = value
    return labels


def _probe(head: bool) -> list[str]:
    """``initLivenessAndReadinessProbe``'s readiness command."""
    checks = [HEALTH.format(timeout=2, port=AGENT_PORT, path="api/local_raylet_healthz")]
    if head:
        checks.append(HEALTH.format(timeout=10, port=DASHBOARD_PORT, path="api/gcs_healthz"))
    return ["bash", "-c", " && ".join(checks)]


@dataclass(frozen=True)
class PodPlan:
    """A pod as the operator creates it: name, labels and spec."""

    name: str
    labels: dict[str, str]
    spec: dict
    ray_start: str = ""
    readiness: tuple[str, ...] = ()


def head_pod(cluster: str, namespace: str, spec: dict, creator: str = "RayCluster") -> PodPlan:
    """The head pod KubeRay v1.5.1 makes of a RayCluster spec."""
    head = spec["headGroupSpec"]
    params = dict(head.get("rayStartParams", {}))
    _group_resources(params, head.get("resources", {}))
    template = copy.deepcopy(head["template"])
    labels = _labels(True, cluster, "headgroup", template)
    _missing_params(params, True, "")
    pod = template["spec"]
    container = pod["containers"][0]
    _metrics_port(container)
    if _auth(spec):
        container.setdefault("env", []).extend(_token_env(cluster))
    ray_start = _build(pod, True, params, "", creator)
    return PodPlan(f"{cluster}-head-{_suffix()}", labels, pod, ray_start, tuple(_probe(True)))


def worker_pods(cluster: str, namespace: str, spec: dict) -> list[PodPlan]:
    """Every worker pod (each group's replicas) KubeRay v1.5.1 makes of a RayCluster spec."""
    address = fqdn(head_service(cluster), namespace)
    pods = []
    for group in spec.get("workerGroupSpecs", []):
        if group.get("numOfHosts", 1) != 1 or group.get("suspend"):
            raise NotImplementedError("multi-host and suspended groups are not emulated")
        replicas = max(min(group.get("replicas", 0), group["maxReplicas"]), group["minReplicas"])
        for _ in range(replicas):
            params = dict(group.get("rayStartParams", {}))
            template = copy.deepcopy(group["template"])
            pod = template["spec"]
            container = pod["containers"][0]
            init = {
                "name": "wait-gcs-ready",
                "image": container["image"],
                "command": ["/bin/bash", "-c", "--"],
                "args": [_wait_gcs(address)],
                "securityContext": copy.deepcopy(container.get("securityContext", {})),
                "env": copy.deepcopy(container.get("env", [])),
                "volumeMounts": copy.deepcopy(container.get("volumeMounts", [])),
                "resources": {
                    "limits": {"cpu": "200m", "memory": "256Mi"},
                    "requests": {"cpu": "200m", "memory": "256Mi"},
                },
            }
            pod.setdefault("initContainers", []).append(init)
            _group_resources(params, group.get("resources", {}))
            labels = _labels(False, cluster, group["groupName"], template)
            _missing_params(params, False, f"{address}:{GCS_PORT}")
            _metrics_port(container)
            if _auth(spec):
                container.setdefault("env", []).extend(_token_env(cluster))
                init["env"].extend(_token_env(cluster))
            ray_start = _build(pod, False, params, address, "")
            name = f"{cluster}-{group['groupName']}-worker-{_suffix()}"
            pods.append(PodPlan(name, labels, pod, ray_start, tuple(_probe(False))))
    return pods


FAQ = (
    "For troubleshooting, refer to the FAQ at "
    "https://docs.ray.io/en/master/cluster/kubernetes/troubleshooting.html."
)


def _wait_gcs(address: str) -> str:
    """The ``wait-gcs-ready`` init container's script (``DefaultWorkerPodTemplate``)."""
    check = f"ray health-check --address {address}:{GCS_PORT}"
    lines = [
        (5, "SECONDS=0"),
        (5, "while true; do"),
        (6, "if (( SECONDS <= 120 )); then"),
        (7, f"if {check} > /dev/null 2>&1; then"),
        (8, 'echo "GCS is ready."'),
        (8, "break"),
        (7, "fi"),
        (7, 'echo "$SECONDS seconds elapsed: Waiting for GCS to be ready."'),
        (6, "else"),
        (7, f"if {check}; then"),
        (8, 'echo "GCS is ready. Any error messages above can be safely ignored."'),
        (8, "break"),
        (7, "fi"),
        (7, f'echo "$SECONDS seconds elapsed: Still waiting for GCS to be ready. {FAQ}"'),
        (6, "fi"),
        (6, "sleep 5"),
        (5, "done"),
    ]
    return "\n" + "".join("\t" * depth + text + "\n" for depth, text in lines) + "\t\t\t\t"


def _auth(spec: dict) -> bool:
    return spec.get("authOptions", {}).get("mode") == "token"


def _metrics_port(container: dict) -> None:
    ports = container.setdefault("ports", [])
    if not any(p.get("name") == "metrics" for p in ports):
        ports.append({"name": "metrics", "containerPort": METRICS_PORT})


def _build(pod: dict, head: bool, params: dict[str, str], address: str, creator: str) -> str:
    """``BuildPod``: /dev/shm, the command, the env; returns the ``ray start`` command."""
    container = pod["containers"][0]
    mounts = container.setdefault("volumeMounts", [])
    if not any(m["mountPath"] == "/dev/shm" for m in mounts):
        limits = container.get("resources", {})
        size = limits.get("limits", {}).get("memory") or limits.get("requests", {}).get("memory")
        pod.setdefault("volumes", []).append(
            {"name": "shared-mem", "emptyDir": {"medium": "Memory", "sizeLimit": size}}
        )
        mounts.append({"name": "shared-mem", "mountPath": "/dev/shm"})
    ray_start = ray_start_command(head, params, container.get("resources", {}))
    existing = " ".join([*container.get("command", []), *container.get("args", [])])
    if "ray start" not in existing:
        generated = f"ulimit -n 65536; {ray_start}"
        container["command"] = ["/bin/bash", "-c", "--"]
        container["args"] = [f"{existing} && {generated}" if existing else generated]
    for init in pod.get("initContainers", []):
        init.setdefault("env", []).extend(
            [
                {"name": "FQ_RAY_IP", "value": address},
                {"name": "RAY_IP", "value": address.split(".")[0]},
            ]
        )
    env = container.setdefault("env", [])
    names = {e["name"] for e in env}
    if not head:
        env += [
            {"name": "FQ_RAY_IP", "value": address},
            {"name": "RAY_IP", "value": address.split(".")[0]},
        ]
    env += [
        {
            "name": "RAY_CLUSTER_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/cluster']"}},
        },
        {
            "name": "RAY_CLOUD_INSTANCE_ID",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
        },
        {
            "name": "RAY_NODE_TYPE_NAME",
            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['ray.io/group']"}},
        },
        {"name": "KUBERAY_GEN_RAY_START_CMD", "value": ray_start},
    ]
    if "RAY_PORT" not in names:
        env.append({"name": "RAY_PORT", "value": str(GCS_PORT)})
    if "RAY_ADDRESS" not in names:
        host = "127.0.0.1" if head else address
        env.append({"name": "RAY_ADDRESS", "value": f"{host}:{GCS_PORT}"})
    if "RAY_USAGE_STATS_KUBERAY_IN_USE" not in names:
        env.append({"name": "RAY_USAGE_STATS_KUBERAY_IN_USE", "value": "1"})
    if head:
        env.append(
            {
                "name": "RAY_USAGE_STATS_EXTRA_TAGS",
                "value": f"kuberay_version={VERSION};kuberay_crd={creator}",
            }
        )
    if "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE" not in names:
        env.append({"name": "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "value": "1"})
    return ray_start


# ---- job.go and rayjob_controller.go ------------------------------------------------------


def job_submit_command(job: dict, dashboard_url: str, job_id: str) -> str:
    """``BuildJobSubmitCommand`` in K8sJobMode, joined as the submitter's bash gets it."""
    spec = job["spec"]
    for key in UNMODELLED_JOB:
        if spec.get(key):
            raise NotImplementedError(f"spec.{key} is not emulated")
    address = dashboard_url if dashboard_url.startswith("http://") else f"http://{dashboard_url}"
    entrypoint = spec["entrypoint"].strip()
    command = ["if", "!", "ray", "job", "status", "--address", address, job_id]
    command += [">/dev/null", "2>&1", ";", "then"]
    command += ["ray", "job", "submit", "--address", address, "--no-wait"]
    command += ["--submission-id", job_id, "--", entrypoint, ";", "fi", ";"]
    command += ["ray", "job", "logs", "--address", address, "--follow", job_id]
    return " ".join(command)


def submitter_pod(job: dict, cluster: str, dashboard_url: str, job_id: str) -> PodPlan:
    """The submitter Job's pod (``getSubmitterTemplate``, ``configureSubmitterContainer``)."""
    template = copy.deepcopy(job["spec"].get("submitterPodTemplate") or _default_submitter(job))
    pod = template["spec"]
    container = pod["containers"][0]
    if not container.get("command"):
        container["command"] = ["/bin/bash", "-ce", "--"]
        container["args"] = [job_submit_command(job, dashboard_url, job_id)]
    env = container.setdefault("env", [])
    env += [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "RAY_DASHBOARD_ADDRESS", "value": dashboard_url},
        {"name": "RAY_JOB_SUBMISSION_ID", "value": job_id},
    ]
    if _auth(job["spec"]["rayClusterSpec"]):
        env += _token_env(cluster)
    labels = dict(template.get("metadata", {}).get("labels", {}))
    return PodPlan(f"{job['metadata']['name']}-{_suffix()}", labels, pod)


def _default_submitter(job: dict) -> dict:
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    return {
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "ray-job-submitter",
                    "image": head["image"],
                    "resources": {
                        "limits": {"cpu": "1", "memory": "1Gi"},
                        "requests": {"cpu": "500m", "memory": "200Mi"},
                    },
                }
            ],
        }
    }


# ---- the controllers, run ---------------------------------------------------------------------


@dataclass
class RayCluster:
    """A RayCluster reconciled to Ready on ``node``: its token Secret, head Service, and
    pods (``pods[0]`` is the head)."""

    node: kubelet.Node
    name: str
    namespace: str
    spec: dict
    creator: str = "RayCluster"  # the CRD that made it: RayCluster or RayJob
    token: str = ""
    pods: list[kubelet.Pod] = field(default_factory=list)
    plans: list[PodPlan] = field(default_factory=list)

    def create(self, ready_timeout_s: float = 300) -> None:
        for key in UNMODELLED_CLUSTER:
            if self.spec.get(key):
                raise NotImplementedError(f"{key} is not emulated")
        if _auth(self.spec):
            self.token = secrets.token_hex(32)
            self.node.add(
                {
                    "kind": "Secret",
                    "metadata": {"name": self.name},
                    "stringData": {"auth_token": self.token},
                }
            )
        head = head_pod(self.name, self.namespace, self.spec, self.creator)
        self.plans = [head, *worker_pods(self.name, self.namespace, self.spec)]
        self.pods.append(self.node.start(head.name, head.labels, head.spec))
        self.service(head_service(self.name))
        self.pods += _start_all(self.node, self.plans[1:])
        self._wait_ready(ready_timeout_s)

    def service(self, name: str) -> None:
        """A Service selecting the head pod, in the cluster's DNS."""
        self.node.dns[fqdn(name, self.namespace)] = self.head.ip

    @property
    def head(self) -> kubelet.Pod:
        return self.pods[0]

    @property
    def dashboard_url(self) -> str:
        """``FetchHeadServiceURL``: the head Service's dashboard port, by its full name."""
        return f"{fqdn(head_service(self.name), self.namespace)}:{DASHBOARD_PORT}"

    def group(self, name: str) -> list[kubelet.Pod]:
        return [p for p in self.pods if p.labels["ray.io/group"] == name]

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for pod, plan in zip(self.pods, self.plans, strict=True):
            while pod.exec(list(plan.readiness), timeout=30).returncode != 0:
                if not pod.container().running() or time.monotonic() > deadline:
                    raise kubelet.PodFailed(f"{pod.name} never Ready: {pod.container().logs()}")
                time.sleep(0.5)

    def delete(self) -> dict[str, dict[str, str]]:
        """Every pod deleted at once, as the garbage collector deletes a cluster's."""
        return _delete_all(self.node, self.pods)

    def request(self, path: str, method: str = "GET") -> tuple[int, bytes]:
        """An HTTP request to the head's dashboard with the token, as the operator sends."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(
            f"http://{self.head.ip}:{DASHBOARD_PORT}{path}", method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


def _start_all(node: kubelet.Node, plans: list[PodPlan]) -> list[kubelet.Pod]:
    """The pods started together, as a controller creates a group's replicas."""
    started: dict[str, kubelet.Pod] = {}
    failures: list[BaseException] = []

    def start(plan: PodPlan) -> None:
        try:
            started[plan.name] = node.start(plan.name, plan.labels, plan.spec)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(plan,)) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return [started[plan.name] for plan in plans]


def _delete_all(node: kubelet.Node, pods: list[kubelet.Pod]) -> dict[str, dict[str, str]]:
    results: dict[str, dict[str, str]] = {}

    def delete(pod: kubelet.Pod) -> None:
        results[pod.name] = node.delete(pod)

    threads = [threading.Thread(target=delete, args=(pod,)) for pod in pods]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@dataclass
class RayJob:
    """A RayJob in K8sJobMode: its cluster, made Ready, then its submitter pod."""

    node: kubelet.Node
    document: dict
    namespace: str = "blastradius"
    cluster: RayCluster | None = None
    submitter: kubelet.Pod | None = None
    job_id: str = ""

    def start(self) -> None:
        spec = self.document["spec"]
        if spec.get("submissionMode", "K8sJobMode") != "K8sJobMode":
            raise NotImplementedError("only K8sJobMode is emulated")
        name = self.document["metadata"]["name"]
        self.job_id = f"{name}-{_suffix()}"
        self.cluster = RayCluster(
            self.node, f"{name}-{_suffix()}", self.namespace, spec["rayClusterSpec"], "RayJob"
        )
        self.cluster.create()
        self.cluster.service(head_service(name))
        plan = submitter_pod(
            self.document, self.cluster.name, self.cluster.dashboard_url, self.job_id
        )
        self.submitter = self.node.start(plan.name, plan.labels, plan.spec)

    def status(self) -> str:
        """The job's status from the dashboard (``GetJobInfo``), or "" before it exists."""
        code, body = self.cluster.request(f"/api/jobs/{self.job_id}")
        return json.loads(body)["status"] if code == 200 else ""

    def wait(self, timeout_s: float) -> str:
        """Until the job is terminal: its status (a deadline failure is ``DeadlineExceeded``)."""
        deadline = time.monotonic() + timeout_s
        while (status := self.status()) not in TERMINAL:
            if time.monotonic() > deadline:
                return "DeadlineExceeded"
            time.sleep(1)
        return status

    def wait_running(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while self.status() != "RUNNING":
            assert time.monotonic() < deadline, self.logs()
            time.sleep(0.2)

    def logs(self) -> str:
        """``kubectl logs job/NAME``: the submitter's output (the run's, followed)."""
        return self.submitter.container().logs() if self.submitter else ""

    def finish(self) -> dict[str, dict[str, str]]:
        """``shutdownAfterJobFinishes``: the cluster goes (after the TTL, here at once)."""
        self._wait_submitter()
        return self.cluster.delete()

    def delete(self) -> dict[str, dict[str, str]]:
        """``kubectl delete rayjob``: the finalizer's ``StopJob``, then the job's cluster
        and submitter garbage-collected, every pod at once."""
        if self.status() not in TERMINAL:
            self.cluster.request(f"/api/jobs/{self.job_id}/stop", method="POST")
        return _delete_all(self.node, [*self.cluster.pods, self.submitter])

    def _wait_submitter(self, timeout_s: float = 60) -> None:
        """The submitter follows the job's logs to their end; a little after it."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.submitter.container().process.wait(timeout=timeout_s)
