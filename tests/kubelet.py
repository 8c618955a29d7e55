"""A kubelet on this machine, for running rendered pod specs as Kubernetes would.

No API server or container runtime runs where this project is built, so a test that
needs pods gets the nearest thing (as root, on Linux):

- each pod has its own network namespace on a bridge, so its own address, and the
  cluster's DNS in its ``/etc/resolv.conf`` (a small server on the bridge that answers
  for the Services a test registers, with Kubernetes' search path and ``ndots:5``);
- each container has its own mount, PID and UTS namespaces: its root is a read-only
  overlay of this machine's root (the "image", with this checkout's virtualenv in it),
  its volumes are mounted where the manifest says (an ``emptyDir`` is a directory, one
  of ``medium: Memory`` a tmpfs of its ``sizeLimit``, a ConfigMap its files, read-only,
  a PersistentVolumeClaim a directory of the node that outlives the pod), and its
  command is its PID 1 (with ``shareProcessNamespace``, a pause process is the pod's
  PID 1 and reaps orphans), run as the pod's user and group with no capabilities and
  ``no_new_privs``;
- its memory and CPU limits are cgroup (v1) limits, where this machine lets a test make
  cgroups; its memory is sampled as the kubelet does (working set: usage less inactive
  file pages), so a test can read each pod's peak;
- a pod is deleted as the kubelet deletes one: its preStop hook, then SIGTERM to each
  container's main process, then SIGKILL when the grace period (preStop included) is
  over.

Not emulated: image pulls, the runtime's open-file limit (a container keeps this
machine's, which root here cannot raise), the scheduler (every pod lands on this one
node), Service virtual IPs (a Service name resolves to its pod's address), seccomp,
probes other than those a caller runs with ``exec``, and NetworkPolicies
(tests/netpol.py judges those).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = str(Path(sys.executable).parent)
# What the emulated image must show where it is: this checkout, and the virtualenv (which
# may live elsewhere) with the package installed from it.
_CHECKOUT = Path(__file__).resolve().parent.parent
IMAGE_PATHS = (_CHECKOUT, *(() if _CHECKOUT in Path(sys.prefix).parents else (Path(sys.prefix),)))
PATH = f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"
IMAGE_USER = (1000, 100)  # the Ray image's user: ray, uid 1000, group users (100)
IMAGE_HOME = "/home/ray"
DEFAULT_SHM = 64 * 2**20  # a container runtime's /dev/shm when the pod mounts none
_UNITS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(text: str | int | float) -> float:
    """A Kubernetes quantity (``512Mi``, ``250m``, ``2``) as a number."""
    match = re.fullmatch(r"([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?", str(text))
    if not match:
        raise ValueError(f"not a quantity: {text!r}")
    number, unit = float(match.group(1)), match.group(2) or ""
    return number / 1000 if unit == "m" else number * _UNITS[unit]


def available() -> str | None:
    """Why pods cannot run here, or None if they can."""
    if sys.platform != "linux":
        return "pods need Linux namespaces"
    if os.geteuid() != 0:
        return "pods need root (namespaces, mounts, a bridge)"
    # The last two are the "image's": KubeRay's probes run wget, kubectl cp runs tar.
    for tool in ("ip", "unshare", "nsenter", "setpriv", "chroot", "wget", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem"
    return None


class PodFailed(AssertionError):
    """A pod that Kubernetes would leave Pending or failing, with why."""


@dataclass
class Container:
    """A running container: its main process (by its pid here) and its log."""

    name: str
    spec: dict
    env: dict[str, str]
    process: subprocess.Popen
    log: Path
    uid: int
    gid: int
    groups: tuple[int, ...]
    killed: bool = False  # by SIGKILL at the end of a grace period
    pre_stop_s: float = 0.0  # how long its preStop hook took
    stop_s: float = 0.0  # from the pod's deletion to the container's end

    def main_pid(self) -> int:
        """The container's main process (its PID 1, unless the pod shares one PID
        namespace): the child ``unshare --fork`` made."""
        return _forked(self.process, f"container {self.name}", self.logs)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None


@dataclass
class Pod:
    """A running pod: its name, labels, address and containers."""

    name: str
    labels: dict[str, str]
    ip: str
    netns: str
    spec: dict
    directory: Path
    containers: dict[str, Container] = field(default_factory=dict)
    init_containers: dict[str, Container] = field(default_factory=dict)
    cgroups: list[Path] = field(default_factory=list)
    pause: subprocess.Popen | None = None  # with shareProcessNamespace
    peak_working_set: int = 0
    cpu_seconds: float = 0.0
    throttled_s: float = 0.0  # time its CPU limit held it back

    def container(self, name: str | None = None) -> Container:
        return self.containers[name] if name else next(iter(self.containers.values()))

    def exec(
        self,
        argv: list[str],
        container: str | None = None,
        timeout: float = 60,
        text: bool = True,
    ) -> subprocess.CompletedProcess:
        """``kubectl exec``: ``argv`` in the container's namespaces, root and user, with
        its environment."""
        running = self.container(container)
        return subprocess.run(
            [
                "nsenter",
                f"--target={running.main_pid()}",
                "--mount",
                "--pid",
                "--uts",
                "--net",
                "--root",
                "--wd",
                "--",
                *_drop_privileges(running.uid, running.gid, running.groups),
                "/usr/bin/env",
                "-i",
                *(f"{k}={v}" for k, v in running.env.items()),
                *argv,
            ],
            capture_output=True,
            text=text,
            timeout=timeout,
        )


def _forked(process: subprocess.Popen, what: str, logs=lambda: "") -> int:
    """The process ``process`` runs in its namespaces: below the ``nsenter`` and
    ``unshare`` that fork into them, the first that is neither."""
    pid, deadline = process.pid, time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            if Path(f"/proc/{pid}/comm").read_text().strip() not in ("nsenter", "unshare"):
                return pid
            found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            if found:
                pid = int(found[0])
                continue
        if process.poll() is not None:
            raise PodFailed(f"{what} exited: {logs()[-2000:]}")
        time.sleep(0.01)
    raise PodFailed(f"{what} never started")


# The pause container of a pod that shares its PID namespace: PID 1, reaping every
# orphan, as Kubernetes' pause does.
PAUSE = """
import os, time
while True:
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        time.sleep(0.05)
"""


def _drop_privileges(uid: int, gid: int, groups: tuple[int, ...]) -> list[str]:
    return [
        "/usr/bin/setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups",
        "--no-new-privs",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]


class Node:
    """One Kubernetes node and the API objects its pods read (ConfigMaps, Secrets,
    PersistentVolumeClaims), in ``root``. ``dns`` maps a Service name to an address."""

    def __init__(
        self, root: Path, objects: list[dict] = (), namespace: str = "blastradius"
    ) -> None:
        reason = available()
        if reason:
            raise RuntimeError(reason)
        self.root = root
        self.objects: dict[tuple[str, str], dict] = {}
        for document in objects:
            self.add(document)
        self.dns: dict[str, str] = {}
        self.pods: dict[str, Pod] = {}
        # Names carry this process's pid (one node at a time per process), so a node
        # whose process died is found and swept by the next one.
        _sweep_orphans()
        self._tag = str(os.getpid())
        self._subnet = _free_subnet()
        self._addresses = itertools.count(2)
        self.bridge = f"krb{self._tag}"
        self.gateway = f"{self._subnet}.1"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        self.namespace = namespace
        self._dns = ClusterDNS(self.gateway, self.dns)
        self._cgroup_roots = _cgroup_roots(f"kubelet-{self._tag}")
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    # ---- the API server's objects ----------------------------------------------------

    def add(self, document: dict) -> None:
        self.objects[(document["kind"], document["metadata"]["name"])] = document

    def get(self, kind: str, name: str) -> dict | None:
        return self.objects.get((kind, name))

    def claim_directory(self, claim: str) -> Path:
        """Where a PersistentVolumeClaim's volume lives on this node."""
        return self.root / "volumes" / claim

    # ---- pods --------------------------------------------------------------------------

    def start(self, name: str, labels: Mapping[str, str], spec: dict) -> Pod:
        """Run a pod: its init containers one after the other to completion, then its
        containers. Raises PodFailed where Kubernetes would leave it Pending or failing."""
        self._check_references(name, spec)
        number = next(self._addresses)
        pod = Pod(
            name=name,
            labels=dict(labels),
            ip=f"{self._subnet}.{number}",
            netns=f"krn{self._tag}x{number}",
            spec=spec,
            directory=self.root / "pods" / name,
        )
        pod.directory.mkdir(parents=True)
        self._network(pod, number)
        pod.cgroups = _make_cgroups(self._cgroup_roots, name, spec)
        self.pods[name] = pod
        if spec.get("shareProcessNamespace"):
            pod.pause = subprocess.Popen(
                [
                    *("nsenter", f"--net=/run/netns/{pod.netns}"),
                    *("unshare", "--pid", "--fork", "--kill-child", "--"),
                    *(sys.executable, "-c", PAUSE),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        volumes = self._volumes(pod)
        for init in spec.get("initContainers", []):
            container = self._run_container(pod, init, volumes)
            pod.init_containers[init["name"]] = container
            try:
                code = container.process.wait(timeout=300)
            except subprocess.TimeoutExpired:
                code = None
            if code != 0:
                raise PodFailed(f"{name}: init container {init['name']}: {container.logs()}")
        for each in spec["containers"]:
            container = self._run_container(pod, each, volumes)
            pod.containers[each["name"]] = container
            container.main_pid()
        return pod

    def delete(self, pod: Pod, grace_s: float | None = None) -> dict[str, str]:
        """Delete a pod as the kubelet does: in every container at once, its preStop
        hook, SIGTERM to its main process, SIGKILL at the grace period's end (counted
        from the start); then whatever is left in the pod is killed. Returns how each
        container ended: ``exited N`` or ``killed``."""
        grace = pod.spec.get("terminationGracePeriodSeconds", 30) if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        threads = [
            threading.Thread(target=self._stop_container, args=(pod, c, deadline))
            for c in pod.containers.values()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._release(pod)
        return {
            name: "killed" if c.killed else f"exited {c.process.returncode}"
            for name, c in pod.containers.items()
        }

    @staticmethod
    def stop_times(pod: Pod) -> str:
        """How long each container took to stop, and its preStop hook (for messages)."""
        return ", ".join(
            f"{pod.name}/{n}: {c.stop_s:.1f}s (preStop {c.pre_stop_s:.1f}s)"
            for n, c in pod.containers.items()
        )

    def _stop_container(self, pod: Pod, container: Container, deadline: float) -> None:
        if not container.running():
            return
        started = time.monotonic()
        hook = container.spec.get("lifecycle", {}).get("preStop", {}).get("exec")
        if hook:
            with contextlib.suppress(subprocess.TimeoutExpired, PodFailed):
                pod.exec(
                    hook["command"],
                    container.name,
                    timeout=max(0.1, deadline - time.monotonic()),
                )
            container.pre_stop_s = time.monotonic() - started
        with contextlib.suppress(ProcessLookupError, PodFailed):
            os.kill(container.main_pid(), signal.SIGTERM)
        try:
            container.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            container.killed = True
            with contextlib.suppress(ProcessLookupError, PodFailed):
                os.kill(container.main_pid(), signal.SIGKILL)
            container.process.wait()
        container.stop_s = time.monotonic() - started

    def close(self) -> None:
        """Kill every pod at once (no grace) and remove the network and cgroups."""
        for pod in list(self.pods.values()):
            for container in [*pod.init_containers.values(), *pod.containers.values()]:
                if container.running():
                    with contextlib.suppress(ProcessLookupError, PodFailed):
                        os.kill(container.main_pid(), signal.SIGKILL)
                    container.process.wait()
            self._release(pod)
        self._stop_sampling.set()
        self._sampler.join()
        self._dns.close()
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("link", "del", self.bridge)
        for root in self._cgroup_roots.values():
            with contextlib.suppress(OSError):
                root.rmdir()

    def _release(self, pod: Pod) -> None:
        if self.pods.pop(pod.name, None) is None:
            return
        if pod.pause is not None:  # the runtime kills what the containers left
            with contextlib.suppress(ProcessLookupError, PodFailed):
                os.kill(_forked(pod.pause, "pause"), signal.SIGKILL)
            pod.pause.wait()
        _sample_pod(pod)
        pod.cpu_seconds = _cpu_seconds(pod)
        pod.throttled_s = _throttled_seconds(pod)
        for cgroup in pod.cgroups:
            _remove_cgroup(cgroup)
        with contextlib.suppress(subprocess.CalledProcessError):
            _ip("netns", "del", pod.netns)

    # ---- how a pod is made -------------------------------------------------------------

    def _check_references(self, name: str, spec: dict) -> None:
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                if self.get("PersistentVolumeClaim", claim) is None:
                    raise PodFailed(f"{name}: Pending, persistentvolumeclaim {claim!r} not found")
            if "configMap" in volume and self.get("ConfigMap", volume["configMap"]["name"]) is None:
                raise PodFailed(f"{name}: configmap {volume['configMap']['name']!r} not found")
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            for source in container.get("envFrom", []):
                secret = source.get("secretRef", {}).get("name")
                if secret and self.get("Secret", secret) is None:
                    raise PodFailed(f"{name}: CreateContainerConfigError: secret {secret!r}")

    def _network(self, pod: Pod, number: int) -> None:
        veth = f"krv{self._tag}x{number}"
        _ip("netns", "add", pod.netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.netns)
        _ip("link", "set", veth, "master", self.bridge, "up")
        inside = ["ip", "netns", "exec", pod.netns, "ip"]
        for args in (
            ["addr", "add", f"{pod.ip}/24", "dev", "eth0"],
            ["link", "set", "eth0", "up"],
            ["link", "set", "lo", "up"],
            ["route", "add", "default", "via", self.gateway],
        ):
            subprocess.run([*inside, *args], check=True, capture_output=True)

    def _volumes(self, pod: Pod) -> dict[str, tuple[str, object]]:
        """Each volume's kind and source: a directory, or a tmpfs size."""
        volumes: dict[str, tuple[str, object]] = {}
        for volume in pod.spec.get("volumes", []):
            name = volume["name"]
            if "emptyDir" in volume:
                empty = volume["emptyDir"] or {}
                if empty.get("medium") == "Memory":
                    size = empty.get("sizeLimit")
                    volumes[name] = ("tmpfs", int(quantity(size)) if size else None)
                    continue
                directory = pod.directory / "volumes" / name
                directory.mkdir(parents=True)
                directory.chmod(0o777)
                volumes[name] = ("bind", directory)
            elif "configMap" in volume:
                config = self.get("ConfigMap", volume["configMap"]["name"])
                directory = pod.directory / "volumes" / name
                directory.mkdir(parents=True)
                for key, text in config.get("data", {}).items():
                    (directory / key).write_text(text)
                    (directory / key).chmod(0o644)
                volumes[name] = ("configMap", directory)
            elif "persistentVolumeClaim" in volume:
                directory = self.claim_directory(volume["persistentVolumeClaim"]["claimName"])
                if not directory.exists():
                    directory.mkdir(parents=True)
                    directory.chmod(0o777)
                volumes[name] = ("bind", directory)
            else:
                raise PodFailed(f"{pod.name}: volume {name}: this kubelet has no {set(volume)}")
        return volumes

    def _run_container(
        self, pod: Pod, spec: dict, volumes: dict[str, tuple[str, object]]
    ) -> Container:
        security = {**pod.spec.get("securityContext", {}), **spec.get("securityContext", {})}
        uid = security.get("runAsUser", IMAGE_USER[0])
        gid = security.get("runAsGroup", IMAGE_USER[1])
        fs_group = pod.spec.get("securityContext", {}).get("fsGroup")
        groups = (gid,) if fs_group is None else tuple(dict.fromkeys((gid, fs_group)))
        if security.get("runAsNonRoot") and uid == 0:
            raise PodFailed(f"{pod.name}: container has runAsNonRoot and image will run as root")
        env = self._environment(pod, spec)
        argv = [*spec.get("command", []), *spec.get("args", [])]
        if not argv:
            raise PodFailed(f"{pod.name}/{spec['name']}: no command (the image's has none here)")
        directory = pod.directory / "containers" / spec["name"]
        (directory / "root").mkdir(parents=True)
        (directory / "layer").mkdir()
        script = directory / "init.sh"
        script.write_text(
            _init_script(
                pod,
                spec,
                directory,
                volumes,
                read_only=bool(security.get("readOnlyRootFilesystem")),
                hosts=self._hosts(pod),
                resolv=self._resolv(),
            )
        )
        log = directory / "log"
        namespaces, own_pid = ["nsenter", f"--net=/run/netns/{pod.netns}"], ["--pid"]
        if pod.pause is not None:  # the pod's one PID namespace: the pause container's
            namespaces.append(f"--pid=/proc/{_forked(pod.pause, 'pause')}/ns/pid")
            own_pid = []
        command = [
            *namespaces,
            "unshare",
            "--mount",
            *own_pid,
            "--uts",
            "--fork",
            "--propagation",
            "private",
            "--",
            "/bin/sh",
            str(script),
            *_drop_privileges(uid, gid, groups),
            "/usr/bin/env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            *argv,
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return Container(spec["name"], spec, env, process, log, uid, gid, groups)

    def _hosts(self, pod: Pod) -> str:
        return f"127.0.0.1\tlocalhost\n{pod.ip}\t{pod.name}\n"

    def _resolv(self) -> str:
        domains = [f"{self.namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"]
        return f"search {' '.join(domains)}\nnameserver {self.gateway}\noptions ndots:5\n"

    def _environment(self, pod: Pod, spec: dict) -> dict[str, str]:
        """The container's environment as the kubelet builds it: the image's (PATH, HOME),
        HOSTNAME, then envFrom, then env (values, Secret keys and pod fields)."""
        env = {"PATH": PATH, "HOME": IMAGE_HOME, "HOSTNAME": pod.name}
        for source in spec.get("envFrom", []):
            secret = self.get("Secret", source["secretRef"]["name"])
            env.update(_secret_data(secret))
        for item in spec.get("env", []):
            if "value" in item:
                env[item["name"]] = _expand(item["value"], env)
                continue
            source = item.get("valueFrom", {})
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self.get("Secret", ref["name"])
                if secret is None or ref["key"] not in _secret_data(secret):
                    raise PodFailed(f"{pod.name}: CreateContainerConfigError: {ref}")
                env[item["name"]] = _secret_data(secret)[ref["key"]]
            elif "fieldRef" in source:
                env[item["name"]] = _field(pod, source["fieldRef"]["fieldPath"])
            else:
                raise PodFailed(f"{pod.name}: env {item['name']}: this kubelet has no {source}")
        return env

    def _sample(self) -> None:
        while not self._stop_sampling.wait(0.25):
            for pod in list(self.pods.values()):
                _sample_pod(pod)


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` references in an env value, to variables defined before."""
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def _secret_data(secret: dict) -> dict[str, str]:
    import base64

    data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    data.update(secret.get("stringData", {}))
    return data


def _field(pod: Pod, path: str) -> str:
    if path == "metadata.name":
        return pod.name
    if path == "status.podIP":
        return pod.ip
    match = re.fullmatch(r"metadata\.labels\['(.+)'\]", path)
    if match:
        return pod.labels.get(match.group(1), "")
    raise PodFailed(f"{pod.name}: fieldRef {path}: not emulated")


def _init_script(
    pod: Pod,
    spec: dict,
    directory: Path,
    volumes: Mapping[str, tuple[str, object]],
    read_only: bool,
    hosts: str,
    resolv: str,
) -> str:
    """The shell that makes a container's root and mounts, then execs its command (the
    script's arguments) as the container's main process."""
    q = shlex.quote
    root = directory / "root"
    lines = ["set -eu"]
    # The container joins the pod's cgroups first, so all it starts is counted and limited.
    lines += [f"echo $$ > {q(str(cgroup / 'cgroup.procs'))}" for cgroup in pod.cgroups]
    lines += [
        "mount --make-rprivate /",
        f"mount -t tmpfs -o size=512m,mode=0755 layer {q(str(directory / 'layer'))}",
        f"mkdir {q(str(directory / 'layer' / 'upper'))} {q(str(directory / 'layer' / 'work'))}",
        "mount -t overlay overlay -o lowerdir=/,"
        f"upperdir={q(str(directory / 'layer' / 'upper'))},"
        f"workdir={q(str(directory / 'layer' / 'work'))} {q(str(root))}",
        f"R={q(str(root))}",
        # The image's Python lives under /root/.pyenv here; an image's is readable by all.
        'chmod 0755 "$R/root"',
        f'mkdir -p "$R{IMAGE_HOME}" && chown {IMAGE_USER[0]}:{IMAGE_USER[1]} "$R{IMAGE_HOME}"',
        'mount -t proc proc "$R/proc"',
        'mount -t sysfs -o ro sysfs "$R/sys"',
        'mount -t tmpfs -o mode=0755 cgroup "$R/sys/fs/cgroup"',
        'mount --rbind /dev "$R/dev"',
        f'mount -t tmpfs -o size={DEFAULT_SHM},mode=1777 shm "$R/dev/shm"',
        f"hostname {q(pod.name)}",
        f'printf %s {q(hosts)} > "$R/etc/hosts"',
        f'printf %s {q(resolv)} > "$R/etc/resolv.conf"',
        f'printf "%s\\n" {q(pod.name)} > "$R/etc/hostname"',
    ]
    for cgroup in pod.cgroups:
        controller = cgroup.parts[4]  # /sys/fs/cgroup/<controller>/...
        lines += [
            f'mkdir -p "$R/sys/fs/cgroup/{controller}"',
            f'mount --bind {q(str(cgroup))} "$R/sys/fs/cgroup/{controller}"',
        ]
    for mount in spec.get("volumeMounts", []):
        kind, source = volumes[mount["name"]]
        target = f'"$R"{q(mount["mountPath"])}'
        lines.append(f"mkdir -p {target}")
        if kind == "tmpfs":
            size = f"size={source}," if source else ""
            lines.append(f"mount -t tmpfs -o {size}mode=1777 tmpfs {target}")
        else:
            lines.append(f"mount --bind {q(str(source))} {target}")
            if kind == "configMap" or mount.get("readOnly"):
                lines.append(f"mount -o remount,bind,ro {target}")
    # The image holds this checkout and its virtualenv where they are on this machine. A
    # volume over that place (a checkout under /tmp, which the pods mount an emptyDir
    # on) would hide them, as it never would in a built image: they go back on top.
    mounted = [Path(m["mountPath"]) for m in spec.get("volumeMounts", [])]
    for path in IMAGE_PATHS:
        if any(m == path or m in path.parents for m in mounted):
            lines += [
                f'mkdir -p "$R"{q(str(path))}',
                f'mount --bind {q(str(path))} "$R"{q(str(path))}',
                f'mount -o remount,bind,ro "$R"{q(str(path))}',
            ]
    if read_only:
        lines.append('mount -o remount,bind,ro "$R"')
    lines += ['cd "$R"', 'exec chroot . "$@"']
    return "\n".join(lines) + "\n"


# ---- cgroups (v1) -------------------------------------------------------------------------


def _cgroup_roots(name: str) -> dict[str, Path]:
    """A parent cgroup per controller (memory, cpu, cpuacct) under this process's own,
    where this machine lets us make them; empty where it does not."""
    roots = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            if controller in ("memory", "cpu", "cpuacct"):
                base = Path("/sys/fs/cgroup") / controller / path.lstrip("/") / name
                for old in base.parent.glob("kubelet-*"):
                    if old.name.removeprefix("kubelet-").isdigit() and not _alive(
                        int(old.name.removeprefix("kubelet-"))
                    ):
                        for child in old.iterdir():
                            if child.is_dir():
                                _remove_cgroup(child)
                        _remove_cgroup(old)
                try:
                    base.mkdir()
                except OSError:
                    continue
                roots[controller] = base
    return roots


def _limits(spec: dict) -> tuple[int | None, float | None]:
    """The pod's memory limit (bytes) and CPU limit (cores): its containers' sums."""
    memory, cpu = 0, 0.0
    for container in spec["containers"]:
        limits = container.get("resources", {}).get("limits", {})
        if "memory" not in limits:
            memory = None
        elif memory is not None:
            memory += int(quantity(limits["memory"]))
        if "cpu" not in limits:
            cpu = None
        elif cpu is not None:
            cpu += quantity(limits["cpu"])
    return memory, cpu


def _make_cgroups(roots: Mapping[str, Path], pod: str, spec: dict) -> list[Path]:
    memory, cpu = _limits(spec)
    made = []
    for controller, root in roots.items():
        cgroup = root / pod
        cgroup.mkdir()
        if controller == "memory" and memory:
            (cgroup / "memory.limit_in_bytes").write_text(str(memory))
        if controller == "cpu" and cpu:
            (cgroup / "cpu.cfs_period_us").write_text("100000")
            (cgroup / "cpu.cfs_quota_us").write_text(str(int(cpu * 100000)))
        made.append(cgroup)
    return made


def _sample_pod(pod: Pod) -> None:
    for cgroup in pod.cgroups:
        if cgroup.parts[4] != "memory":
            continue
        with contextlib.suppress(OSError, ValueError):
            usage = int((cgroup / "memory.usage_in_bytes").read_text())
            stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
            working_set = usage - int(stat.get("total_inactive_file", 0))
            pod.peak_working_set = max(pod.peak_working_set, working_set)


def _cpu_seconds(pod: Pod) -> float:
    for cgroup in pod.cgroups:
        if cgroup.parts[4] == "cpuacct":
            with contextlib.suppress(OSError, ValueError):
                return int((cgroup / "cpuacct.usage").read_text()) / 1e9
    return 0.0


def _throttled_seconds(pod: Pod) -> float:
    for cgroup in pod.cgroups:
        if cgroup.parts[4] == "cpu":
            with contextlib.suppress(OSError, ValueError):
                stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
                return int(stat.get("throttled_time", 0)) / 1e9
    return 0.0


def _remove_cgroup(cgroup: Path) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            cgroup.rmdir()
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            time.sleep(0.05)


class ClusterDNS:
    """The cluster's DNS (CoreDNS's part a run needs): A records for the names in
    ``records`` (read at each query), no other record for them, NXDOMAIN for the rest;
    UDP on ``address``:53."""

    def __init__(self, address: str, records: Mapping[str, str]) -> None:
        self.records = records
        self.queries: list[tuple[float, str, int, tuple]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 53))
        self.sock.settimeout(0.2)
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                query, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            try:
                self.sock.sendto(self.answer(query), peer)
            except Exception as exc:
                self.queries.append((time.time(), repr(exc), 0, peer))

    def answer(self, query: bytes) -> bytes:
        (ident,) = struct.unpack("!H", query[:2])
        labels, offset = [], 12
        while query[offset]:
            length = query[offset]
            labels.append(query[offset + 1 : offset + 1 + length].decode().lower())
            offset += 1 + length
        qtype, _ = struct.unpack("!HH", query[offset + 1 : offset + 5])
        self.queries.append((time.time(), ".".join(labels), qtype, ()))
        question = query[12 : offset + 5]
        address = self.records.get(".".join(labels))
        answers = b""
        if address is not None and qtype == 1:
            answers = struct.pack("!HHHLH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(address)
        rcode = 3 if address is None else 0
        header = struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 1 if answers else 0, 0, 0)
        return header + question + answers

    def close(self) -> None:
        self.closed.set()
        self.thread.join()
        self.sock.close()


def _free_subnet() -> str:
    """A 10.x.y.0/24 no interface of this machine has an address in."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for second in range(200, 250):
        for third in range(256):
            subnet = f"10.{second}.{third}"
            if f" {subnet}." not in taken:
                return subnet
    raise RuntimeError("no free 10.x.y.0/24 for pods")


def _sweep_orphans() -> None:
    """Pods, bridges and cgroups left by a node whose process is gone (killed before it
    could clean up): their processes are killed and their namespaces removed."""
    names = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for netns in re.findall(r"^(krn(\d+)x\d+)", namespaces, re.M):
        if not _alive(int(netns[1])):
            pids = subprocess.run(
                ["ip", "netns", "pids", netns[0]], capture_output=True, text=True
            ).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", netns[0])
    for bridge, pid in re.findall(r"^\d+: (krb(\d+)):", names, re.M):
        if not _alive(int(pid)):
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("link", "del", bridge)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def node(root: Path, objects: list[dict] = (), namespace: str = "blastradius") -> Iterator[Node]:
    """A node for the length of a ``with`` block; every pod left is killed at its end."""
    made = Node(root, objects, namespace)
    try:
        yield made
    finally:
        made.close()
