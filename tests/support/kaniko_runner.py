"""Run the ``kaniko`` container of a rendered Job the way a kubelet would, without Docker.

The e2e tier hands this module a Job manifest exactly as ``airflow_kaniko.build`` renders it
(a plain batch/v1 dict) plus the Secrets and ConfigMaps the operator would create, and gets
back what the kubelet would report for the container: exit code, log and termination message.

How the container is made, step by step (what containerd and the kubelet do for a pod):

- The image: a directory laid out like ``ghcr.io/osscontainertools/kaniko`` (``/kaniko/executor``,
  ``/kaniko/ssl/certs/ca-certificates.crt``, ``/etc/nsswitch.conf``, ``/workspace``), plus the
  image config's entrypoint, environment and working directory (``EXECUTOR_IMAGE``).
- The root filesystem: an overlay mount (image directory as the lower layer, a fresh writable
  upper layer), as containerd's overlayfs snapshotter makes it. kaniko treats ``/`` as the
  filesystem it builds in: it unpacks base-image layers into it and deletes it between stages,
  so the writable layer must be the container's own. An overlay ``/`` is also how kaniko's
  ``checkContained`` recognises a Kubernetes container (it refuses to run elsewhere without
  ``--force``; see ``pkg/util/proc``), so nothing is added to the args for that.
- Mounts: ``/proc`` of the pod's own pid namespace, a tmpfs ``/dev`` with the usual device
  nodes bound in, ``/dev/termination-log`` bound to a file the runner reads afterwards,
  ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf``, and every ``volumeMount`` from its
  volume (Secret and ConfigMap items written as files, read-only; PVC and hostPath from host
  directories the caller names). kaniko reads ``/proc/self/mountinfo`` and leaves every mount
  point out of snapshots and filesystem deletion, as it does in a real pod.
- The process: ``unshare --mount --pid --fork --mount-proc`` (util-linux), then chroot into
  the overlay, ``chdir`` to the working directory and exec of the container's command (or
  the image's entrypoint) with its args, ``$(VAR)`` references expanded as the kubelet does,
  and the image env overlaid with the container env (``valueFrom.secretKeyRef`` resolved).
  It shares the host's network namespace (a ``hostNetwork`` pod), so a registry on loopback
  is reachable at ``127.0.0.1``.
- Termination message: the content of ``terminationMessagePath`` (at most 4096 bytes); with
  ``FallbackToLogsOnError`` and a failed container and an empty file, the last 80 lines of
  the log (at most 2048 bytes), like the kubelet.

``kaniko_unavailable_reason()`` says why the tier cannot run here (for the skip message).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BUILD_SCRIPT",
    "EXECUTOR_IMAGE",
    "ContainerResult",
    "ImageConfig",
    "build_executor",
    "kaniko_unavailable_reason",
    "pod_from_result",
    "run_job_container",
]

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-kaniko.sh"
# kubelet limits (pkg/kubelet/container: MaxContainerTerminationMessage*).
_MESSAGE_MAX = 4096
_FALLBACK_LINES = 80
_FALLBACK_MAX = 2048


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an image's config a container runtime uses."""

    entrypoint: tuple[str, ...]
    env: Mapping[str, str]
    working_dir: str


# The config of ghcr.io/osscontainertools/kaniko (deploy/Dockerfile: ENTRYPOINT, ENV, WORKDIR).
EXECUTOR_IMAGE = ImageConfig(
    entrypoint=("/kaniko/executor",),
    env={
        "PATH": "/usr/local/bin:/kaniko",
        "HOME": "/root",
        "USER": "root",
        "SSL_CERT_DIR": "/kaniko/ssl/certs",
        "DOCKER_CONFIG": "/kaniko/.docker/",
        "DOCKER_CREDENTIAL_GCR_CONFIG": "/kaniko/.config/gcloud/docker_credential_gcr_config.json",
    },
    working_dir="/workspace",
)


@dataclass
class ContainerResult:
    """What the kubelet would report for the container, plus where its files are."""

    exit_code: int
    log: str
    termination_log: str  # the file's content, as kaniko left it
    termination_message: str  # what the container status would carry (policy applied)
    argv: list[str]
    env: dict[str, str]
    duration_seconds: float
    workdir: Path
    timed_out: bool = False
    upper_dir: Path | None = None

    @property
    def reason(self) -> str:
        return "Completed" if self.exit_code == 0 else "Error"


def build_executor(*, timeout: float = 1800) -> Path:
    """Build (or take from the cache) the executor; returns its path. Raises with the log."""
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    path = Path(result.stdout.strip().splitlines()[-1])
    if result.stderr.strip():
        # e.g. the fallback from the fork to the upstream module: say so in the test output.
        print(f"{BUILD_SCRIPT.name}: {result.stderr.strip()}", file=sys.stderr)
    return path


def kaniko_unavailable_reason() -> str | None:
    """None when an isolated root can be made here, else why not (for the skip message)."""
    if sys.platform != "linux":
        return f"needs Linux namespaces; this is {sys.platform}"
    if os.geteuid() != 0:
        return "needs root (mount and pid namespaces, chroot, overlay mounts); run as root"
    for binary, package in (("unshare", "util-linux"), ("mount", "mount"), ("chroot", "coreutils")):
        if shutil.which(binary) is None:
            return f"missing {binary} (apt-get install -y {package})"
    if shutil.which("go") is None and not _cached_executor_exists():
        return "no Go toolchain to build the kaniko executor and no cached executor"
    # The container root is an overlay mount inside new mount and pid namespaces: try exactly that.
    with tempfile.TemporaryDirectory(prefix="kaniko-probe-") as tmp:
        dirs = [Path(tmp, name) for name in ("lower", "upper", "work", "root")]
        for directory in dirs:
            directory.mkdir()
        options = f"lowerdir={dirs[0]},upperdir={dirs[1]},workdir={dirs[2]}"
        probe = subprocess.run(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                options,
                str(dirs[3]),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        shutil.rmtree(dirs[2], ignore_errors=True)
    if probe.returncode != 0:
        return f"cannot mount an overlay root in new mount and pid namespaces: {probe.stderr.strip()}"
    return None


def _cached_executor_exists() -> bool:
    cache = Path(os.environ.get("AIRFLOW_KANIKO_CACHE", Path.home() / ".cache" / "airflow-kaniko"))
    return any(cache.glob("kaniko/**/executor"))


# --- from the manifest ----------------------------------------------------------------------


def _container(job: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for container in job["spec"]["template"]["spec"]["containers"]:
        if container["name"] == name:
            return dict(container)
    raise KeyError(f"the Job has no container named {name!r}")


def _index(objects: Sequence[Mapping[str, Any]], kind: str) -> dict[str, Mapping[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o.get("kind") == kind}


def _object_data(obj: Mapping[str, Any]) -> dict[str, bytes]:
    """A Secret's or ConfigMap's keys as bytes, as the kubelet writes them into a volume."""
    data: dict[str, bytes] = {}
    if obj.get("kind") == "Secret":
        data.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
    else:
        data.update({k: v.encode() for k, v in (obj.get("data") or {}).items()})
        data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known names are replaced, $$ escapes, unknown stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", replace, value)


def _container_env(
    container: Mapping[str, Any], image: ImageConfig, secrets: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    env = dict(image.env)
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = _expand(str(item["value"]), env)
            continue
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            raise NotImplementedError(f"env {item['name']!r}: only value and secretKeyRef are supported")
        secret = secrets.get(ref["name"])
        data = _object_data(secret) if secret is not None else {}
        if ref["key"] in data:
            env[item["name"]] = data[ref["key"]].decode()
        elif not ref.get("optional"):
            raise RuntimeError(
                f"CreateContainerConfigError: secret {ref['name']!r} key {ref['key']!r} not found"
            )
    return env


def _materialize_volume(
    volume: Mapping[str, Any],
    *,
    target: Path,
    objects: Sequence[Mapping[str, Any]],
    host_paths: Mapping[str, Path],
) -> Path:
    """Write a volume's content under ``target`` (or name the host dir); returns the mount source."""
    for kind, key, name_field in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
        if key not in volume:
            continue
        name = volume[key][name_field]
        obj = _index(objects, kind).get(name)
        if obj is None:
            raise RuntimeError(f"the pod would stay in ContainerCreating: {kind} {name!r} does not exist")
        data = _object_data(obj)
        items = volume[key].get("items") or [{"key": k, "path": k} for k in data]
        target.mkdir(parents=True)
        for item in items:
            path = target / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            path.chmod(item.get("mode", volume[key].get("defaultMode", 0o644)))
        return target
    if "persistentVolumeClaim" in volume:
        claim = volume["persistentVolumeClaim"]["claimName"]
        if claim not in host_paths:
            raise RuntimeError(f"no host directory given for PersistentVolumeClaim {claim!r}")
        return host_paths[claim]
    if "hostPath" in volume:
        return Path(volume["hostPath"]["path"])
    if "emptyDir" in volume:
        target.mkdir(parents=True)
        return target
    raise NotImplementedError(f"volume {volume['name']!r}: unsupported volume type")


# --- the image directory --------------------------------------------------------------------


def _write_image(lower: Path, *, executor: Path, ca_certs: Sequence[Path]) -> None:
    """Lay out the executor image: what ghcr.io/osscontainertools/kaniko holds."""
    for directory in (
        "kaniko/ssl/certs",
        "kaniko/.docker",
        "etc/ssl/certs",
        "workspace",
        "root",
        "dev",
        "proc",
        "sys",
        "tmp",
    ):
        (lower / directory).mkdir(parents=True, exist_ok=True)
    (lower / "tmp").chmod(0o1777)
    shutil.copy2(executor, lower / "kaniko" / "executor")
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    pem = bundle.read_bytes() if bundle.exists() else b""
    for cert in ca_certs:
        pem += b"\n" + cert.read_bytes()
    (lower / "kaniko/ssl/certs/ca-certificates.crt").write_bytes(pem)
    (lower / "etc/nsswitch.conf").write_text("hosts: files dns\n")
    (lower / "etc/hosts").write_text("")
    (lower / "etc/hostname").write_text("")
    (lower / "etc/resolv.conf").write_text("")


# The program that runs as pid 1 of the new pid namespace: mount everything, chroot, exec.
# It gets the path of a JSON plan on argv[1] (a file, not argv: the env may hold secrets).
_PID1 = r"""
import json, os, subprocess, sys
with open(sys.argv[1]) as f:
    plan = json.load(f)
root = plan["root"]

def mount(*args):
    subprocess.run(["mount", *args], check=True)

mount("-t", "overlay", "overlay", "-o",
      "lowerdir={lower},upperdir={upper},workdir={work}".format(**plan["overlay"]), root)
mount("-t", "proc", "proc", root + "/proc")
mount("-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", root + "/dev")
for dev in ("null", "zero", "full", "random", "urandom", "tty"):
    open(root + "/dev/" + dev, "w").close()
    mount("--bind", "/dev/" + dev, root + "/dev/" + dev)
os.mkdir(root + "/dev/shm")
mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "shm", root + "/dev/shm")
for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                     ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
    os.symlink(target, root + "/dev/" + name)
for bind in plan["binds"]:
    target = root + bind["target"]
    if os.path.isdir(bind["source"]):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    mount("--bind", bind["source"], target)
    if bind["readOnly"]:
        mount("-o", "remount,bind,ro", target)
os.chroot(root)
os.chdir(plan["workingDir"])
os.execvpe(plan["argv"][0], plan["argv"], plan["env"])
"""


def run_job_container(
    job: Mapping[str, Any],
    *,
    executor: Path,
    workdir: Path,
    objects: Sequence[Mapping[str, Any]] = (),
    host_paths: Mapping[str, Path] | None = None,
    ca_certs: Sequence[Path] = (),
    container_name: str = "kaniko",
    image: ImageConfig = EXECUTOR_IMAGE,
    timeout: float = 900,
) -> ContainerResult:
    """Run one container of ``job`` in an isolated root; returns what the kubelet would report.

    ``objects`` are the Secrets and ConfigMaps the pod's volumes and env refer to (manifests as
    rendered, e.g. by ``render_docker_config_secret``); ``host_paths`` maps PVC claim names to
    host directories; ``ca_certs`` are appended to the image's CA bundle (a registry with a
    test CA). The container's stdout and stderr go to one log, as with the kubelet.
    """
    container = _container(job, container_name)
    pod_spec = job["spec"]["template"]["spec"]
    user = (container.get("securityContext") or {}).get("runAsUser")
    if user is None:
        user = (pod_spec.get("securityContext") or {}).get("runAsUser")
    if user not in (None, 0):
        raise NotImplementedError(f"runAsUser {user}: this runner runs containers as root only")
    run_dir = workdir / f"pod-{uuid.uuid4().hex[:8]}"
    lower, upper, work, root, volumes_dir = (
        run_dir / n for n in ("image", "upper", "work", "rootfs", "volumes")
    )
    for directory in (upper, work, root, volumes_dir):
        directory.mkdir(parents=True)
    _write_image(lower, executor=executor, ca_certs=ca_certs)

    secrets = _index(objects, "Secret")
    env = _container_env(container, image, secrets)
    # $(VAR) in command and args refers to the container's declared env, not the image's.
    declared = {item["name"]: env[item["name"]] for item in container.get("env") or [] if item["name"] in env}
    # As with a runtime: command replaces the entrypoint; args alone follow the entrypoint.
    command = [_expand(c, declared) for c in container.get("command") or []] or list(image.entrypoint)
    argv = command + [_expand(a, declared) for a in container.get("args") or []]

    termination_path = container.get("terminationMessagePath", "/dev/termination-log")
    termination_file = run_dir / "termination-log"
    termination_file.write_bytes(b"")
    etc_hosts = run_dir / "hosts"
    etc_hosts.write_text("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
    hostname = run_dir / "hostname"
    hostname.write_text(job["metadata"]["name"][:63] + "\n")
    resolv = run_dir / "resolv.conf"
    host_resolv = Path("/etc/resolv.conf")
    resolv.write_text(host_resolv.read_text() if host_resolv.exists() else "")

    binds: list[dict[str, Any]] = [
        {"source": str(termination_file), "target": termination_path, "readOnly": False},
        {"source": str(etc_hosts), "target": "/etc/hosts", "readOnly": False},
        {"source": str(hostname), "target": "/etc/hostname", "readOnly": False},
        {"source": str(resolv), "target": "/etc/resolv.conf", "readOnly": False},
    ]
    volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
    sources: dict[str, Path] = {}
    for mount in container.get("volumeMounts") or []:
        name = mount["name"]
        if name not in volumes:
            raise RuntimeError(f"volumeMount {name!r} has no volume in the pod spec")
        if name not in sources:
            sources[name] = _materialize_volume(
                volumes[name], target=volumes_dir / name, objects=objects, host_paths=host_paths or {}
            )
        source = sources[name]
        if mount.get("subPath"):
            source = source / mount["subPath"]
        read_only = bool(mount.get("readOnly")) or any(k in volumes[name] for k in ("secret", "configMap"))
        binds.append({"source": str(source), "target": mount["mountPath"], "readOnly": read_only})

    plan = {
        "root": str(root),
        "overlay": {"lower": str(lower), "upper": str(upper), "work": str(work)},
        "binds": binds,
        "workingDir": container.get("workingDir") or image.working_dir,
        "argv": argv,
        "env": env,
    }
    plan_path = run_dir / "plan.json"
    plan_path.touch(mode=0o600)
    plan_path.write_text(json.dumps(plan))
    log_path = run_dir / "container.log"
    started = time.monotonic()
    timed_out = False
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                sys.executable,
                "-c",
                _PID1,
                str(plan_path),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")},
            start_new_session=True,
        )
        try:
            exit_code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            process.kill()  # unshare --kill-child takes the namespace's pid 1 with it
            exit_code = process.wait(timeout=30)
    duration = time.monotonic() - started
    log_text = log_path.read_text(errors="replace")
    termination_log = termination_file.read_bytes()[:_MESSAGE_MAX].decode(errors="replace")
    message = termination_log
    if (
        not message.strip()
        and exit_code != 0
        and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
    ):
        message = "\n".join(log_text.splitlines()[-_FALLBACK_LINES:])[-_FALLBACK_MAX:]
    plan_path.unlink()
    shutil.rmtree(work, ignore_errors=True)  # overlayfs' scratch dir; upper/ stays for inspection
    return ContainerResult(
        exit_code=exit_code,
        log=log_text,
        termination_log=termination_log,
        termination_message=message,
        argv=argv,
        env=env,
        duration_seconds=duration,
        workdir=run_dir,
        timed_out=timed_out,
        upper_dir=upper,
    )


def pod_from_result(
    job: Mapping[str, Any], result: ContainerResult, *, container_name: str = "kaniko"
) -> dict[str, Any]:
    """The Pod object a cluster would show for this run (for ``airflow_kaniko.status``)."""
    template = job["spec"]["template"]
    terminated = {
        "exitCode": result.exit_code,
        "reason": result.reason,
        "message": result.termination_message,
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job['metadata']['name']}-e2e",
            "namespace": job["metadata"]["namespace"],
            "labels": dict(template["metadata"].get("labels") or {}),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": template["spec"],
        "status": {
            "phase": "Succeeded" if result.exit_code == 0 else "Failed",
            "containerStatuses": [
                {"name": container_name, "state": {"terminated": terminated}, "restartCount": 0}
            ],
        },
    }
