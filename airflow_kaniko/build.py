"""What to build (``KanikoBuild``) and where it runs (``JobSettings``) -> the Job manifest. Pure.

``render_job`` is the single place that decides what the Kubernetes Job looks like; the
operator, the CLI's ``render`` and the tests all call it. Every input is validated here,
before anything reaches the cluster.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_kaniko.context import ContextPlan, plan_context
from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.naming import LABEL_PREFIX, BuildIdentity, build_key, job_name, label_safe
from airflow_kaniko.reference import parse_reference
from airflow_kaniko.validation import (
    validate_build_arg_name,
    validate_dns_label,
    validate_dns_subdomain,
    validate_label_key,
    validate_label_value,
    validate_resources,
)

__all__ = [
    "DEFAULT_EXECUTOR_IMAGE",
    "DOCKER_CONFIG_MOUNT",
    "KANIKO_CONTAINER",
    "JobSettings",
    "KanikoBuild",
    "RenderedBuild",
    "render_build",
    "render_configmap",
    "render_docker_config_secret",
]

# The maintained fork (Google's repository was archived in June 2025); same flags.
DEFAULT_EXECUTOR_IMAGE = "ghcr.io/osscontainertools/kaniko:v1.28.2"
KANIKO_CONTAINER = "kaniko"
DOCKER_CONFIG_MOUNT = "/kaniko/.docker"
DOCKER_CONFIG_VOLUME = "docker-config"
TERMINATION_LOG = "/dev/termination-log"
DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "4Gi"},
}
# Flags the operator owns: passing them through extra_args would contradict the rendered Job.
_MANAGED_FLAGS = (
    "--context",
    "-c",
    "--dockerfile",
    "-f",
    "--destination",
    "-d",
    "--digest-file",
    "--build-arg",
    "--target",
    "--label",
    "--cache",
    "--cache-repo",
    "--no-push",
)
ANNOTATION_KEYS = ("dag_id", "task_id", "run_id", "map_index", "try_number")


@dataclass(frozen=True, kw_only=True)
class KanikoBuild:
    """What to build: a context, a Dockerfile and where to push the result."""

    context: str
    destinations: Sequence[str]
    dockerfile: str = "Dockerfile"
    build_args: Mapping[str, str] = field(default_factory=dict)
    target: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    cache: bool = False
    cache_repo: str | None = None
    push: bool = True
    push_retry: int = 3
    image_download_retry: int = 3
    extra_args: Sequence[str] = ()


@dataclass(frozen=True, kw_only=True)
class JobSettings:
    """Where and how the build runs in the cluster."""

    namespace: str = "default"
    executor_image: str = DEFAULT_EXECUTOR_IMAGE
    docker_config_secret: str | None = None
    git_secret: str | None = None
    resources: Mapping[str, Mapping[str, str | int | float]] = field(
        default_factory=lambda: DEFAULT_RESOURCES
    )
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: Sequence[Mapping[str, Any]] = ()
    service_account_name: str | None = None
    automount_service_account_token: bool = False
    image_pull_secrets: Sequence[str] = ()
    backoff_limit: int = 2
    active_deadline_seconds: int = 3600
    ttl_seconds_after_finished: int | None = 86400
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    # Created suspended so owned Secrets/ConfigMaps exist before any pod starts (see cluster.py).
    suspend: bool = False


@dataclass(frozen=True, kw_only=True)
class RenderedBuild:
    job: dict[str, Any]
    context: ContextPlan

    @property
    def name(self) -> str:
        return str(self.job["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.job["metadata"]["namespace"])


def _validate_build(build: KanikoBuild) -> list[str]:
    if isinstance(build.destinations, str):
        raise InvalidInputError(
            f"destinations must be a list of image references, not the string {build.destinations!r}"
        )
    destinations = list(build.destinations)
    if build.push and not destinations:
        raise InvalidInputError("destinations is empty: give at least one image reference to push to")
    for dest in destinations:
        parse_reference(dest, what="destination", allow_digest=False)
    if len(set(destinations)) != len(destinations):
        raise InvalidInputError(f"destinations {destinations!r} contain duplicates")
    if not build.dockerfile or build.dockerfile.startswith("/") or ".." in build.dockerfile.split("/"):
        raise InvalidInputError(
            f"dockerfile {build.dockerfile!r} is not valid: give a relative path inside the context"
        )
    for name, value in build.build_args.items():
        validate_build_arg_name(name)
        if not isinstance(value, str):
            raise InvalidInputError(f"build-arg {name!r} has a non-string value {value!r}")
    for key in build.labels:
        validate_label_key(key, what="image label key")
    if build.target is not None and not build.target.strip():
        raise InvalidInputError("target is empty: give a stage name or leave it unset")
    if build.cache_repo is not None:
        if not build.cache:
            raise InvalidInputError("cache_repo is set but cache is off: set cache=True to use it")
        parse_reference(build.cache_repo, what="cache_repo", allow_digest=False)
    for number, what in (
        (build.push_retry, "push_retry"),
        (build.image_download_retry, "image_download_retry"),
    ):
        if not isinstance(number, int) or number < 0:
            raise InvalidInputError(f"{what} {number!r} is not valid: a non-negative integer")
    for arg in build.extra_args:
        flag = arg.split("=", 1)[0]
        if flag in _MANAGED_FLAGS:
            raise InvalidInputError(
                f"extra_args entry {arg!r} sets {flag}, which the operator manages; "
                "use the matching parameter (context, dockerfile, destinations, build_args, target, labels, cache)"
            )
        if not flag.startswith("--"):
            raise InvalidInputError(
                f"extra_args entry {arg!r} is not a flag: expected --flag or --flag=value"
            )
    return destinations


def _validate_settings(settings: JobSettings) -> dict[str, dict[str, str]]:
    validate_dns_label(settings.namespace, what="namespace")
    parse_reference(settings.executor_image, what="executor_image")
    for secret in (settings.docker_config_secret, settings.git_secret, *settings.image_pull_secrets):
        if secret is not None:
            validate_dns_subdomain(secret, what="Secret name")
    if settings.service_account_name is not None:
        validate_dns_subdomain(settings.service_account_name, what="service_account_name")
    for key, value in {**settings.node_selector, **settings.pod_labels}.items():
        validate_label_key(key)
        validate_label_value(value, what=f"value of label {key!r}")
    for key in settings.pod_annotations:
        validate_label_key(key, what="annotation key")
    for name in settings.env:
        validate_build_arg_name(name) if name else None
    for number, what, minimum in (
        (settings.backoff_limit, "backoff_limit", 0),
        (settings.active_deadline_seconds, "active_deadline_seconds", 1),
    ):
        if not isinstance(number, int) or number < minimum:
            raise InvalidInputError(f"{what} {number!r} is not valid: an integer >= {minimum}")
    ttl = settings.ttl_seconds_after_finished
    if ttl is not None and (not isinstance(ttl, int) or ttl < 0):
        raise InvalidInputError(f"ttl_seconds_after_finished {ttl!r} is not valid: an integer >= 0 or None")
    return validate_resources(settings.resources)


def _kaniko_args(build: KanikoBuild, destinations: list[str], plan: ContextPlan) -> list[str]:
    args = [f"--context={plan.kaniko_context}", f"--dockerfile={build.dockerfile}"]
    args += [f"--destination={d}" for d in destinations]
    if not build.push:
        args.append("--no-push")
    args += [f"--build-arg={k}={v}" for k, v in sorted(build.build_args.items())]
    if build.target:
        args.append(f"--target={build.target}")
    args += [f"--label={k}={v}" for k, v in sorted(build.labels.items())]
    if build.cache:
        args.append("--cache=true")
        if build.cache_repo:
            args.append(f"--cache-repo={build.cache_repo}")
    # kaniko writes the digest before it pushes; verification (registry.py) proves the push.
    args.append(f"--digest-file={TERMINATION_LOG}")
    args += [f"--push-retry={build.push_retry}", f"--image-download-retry={build.image_download_retry}"]
    # Plain text: the default colour codes would end up in the termination message and the task log.
    args.append("--log-format=text")
    args += list(build.extra_args)
    return args


def render_build(build: KanikoBuild, settings: JobSettings, identity: BuildIdentity) -> RenderedBuild:
    """Validate everything and render the batch/v1 Job for one build attempt."""
    destinations = _validate_build(build)
    resources = _validate_settings(settings)
    name = job_name(identity)
    plan = plan_context(build.context, configmap_name=name, git_secret=settings.git_secret)

    selector_labels = {
        f"{LABEL_PREFIX}/build-key": build_key(identity),
        f"{LABEL_PREFIX}/try-number": str(identity.try_number),
    }
    labels = {
        "app.kubernetes.io/name": "kaniko",
        "app.kubernetes.io/managed-by": "airflow-kaniko",
        **selector_labels,
        f"{LABEL_PREFIX}/dag-id": label_safe(identity.dag_id),
        f"{LABEL_PREFIX}/task-id": label_safe(identity.task_id),
        f"{LABEL_PREFIX}/run-id": label_safe(identity.run_id),
    }
    if identity.map_index >= 0:  # "-1" is not a valid label value; the annotation always has it
        labels[f"{LABEL_PREFIX}/map-index"] = str(identity.map_index)
    annotations = {
        f"{LABEL_PREFIX}/{key.replace('_', '-')}": str(getattr(identity, key)) for key in ANNOTATION_KEYS
    }
    annotations[f"{LABEL_PREFIX}/destinations"] = json.dumps(destinations)

    volumes: list[dict[str, Any]] = list(plan.volumes)
    mounts: list[dict[str, Any]] = list(plan.volume_mounts)
    if settings.docker_config_secret:
        volumes.append(
            {
                "name": DOCKER_CONFIG_VOLUME,
                "secret": {
                    "secretName": settings.docker_config_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
        mounts.append({"name": DOCKER_CONFIG_VOLUME, "mountPath": DOCKER_CONFIG_MOUNT, "readOnly": True})

    env = [{"name": k, "value": v} for k, v in sorted(settings.env.items())] + list(plan.env)
    container: dict[str, Any] = {
        "name": KANIKO_CONTAINER,
        "image": settings.executor_image,
        "imagePullPolicy": "IfNotPresent",
        "args": _kaniko_args(build, destinations, plan),
        "resources": resources,
        "terminationMessagePath": TERMINATION_LOG,
        # A failed build leaves no digest; the log tail then becomes the termination message.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        # kaniko must be root inside its container to unpack and snapshot the image filesystem;
        # nothing here is privileged and no capability beyond the runtime default is added.
        "securityContext": {"privileged": False, "runAsUser": 0, "runAsNonRoot": False},
    }
    if env:
        container["env"] = env
    if mounts:
        container["volumeMounts"] = mounts

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": settings.automount_service_account_token,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    if settings.service_account_name:
        pod_spec["serviceAccountName"] = settings.service_account_name
    if settings.node_selector:
        pod_spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in settings.tolerations]
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]

    job_spec: dict[str, Any] = {
        "backoffLimit": settings.backoff_limit,
        "activeDeadlineSeconds": settings.active_deadline_seconds,
        # Evictions and preemptions are not the build's fault: they do not use up the backoff limit.
        "podFailurePolicy": {
            "rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
        },
        "template": {
            "metadata": {
                "labels": {**labels, **settings.pod_labels},
                "annotations": {**annotations, **settings.pod_annotations},
            },
            "spec": pod_spec,
        },
    }
    if settings.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    if settings.suspend:
        job_spec["suspend"] = True

    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": job_spec,
    }
    return RenderedBuild(job=job, context=plan)


def docker_config_secret_name(job_name: str) -> str:
    return f"{job_name}-docker-config"


def git_secret_name(job_name: str) -> str:
    return f"{job_name}-git"


def owned_object_names(job_name: str) -> tuple[tuple[str, str], ...]:
    """(kind, name) of every object a build Job may own: deleted by name with it, so the
    identity Airflow uses needs no right to list Secrets (the garbage collector would remove
    them too, but not at once)."""
    return (
        ("secrets", docker_config_secret_name(job_name)),
        ("secrets", git_secret_name(job_name)),
        ("configmaps", job_name),
    )


def _owned_metadata(job: Mapping[str, Any], name: str) -> dict[str, Any]:
    meta = job["metadata"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "controller": True}
    if "uid" in meta:
        owner["uid"] = meta["uid"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": {k: v for k, v in meta["labels"].items() if k.startswith(LABEL_PREFIX)},
        "ownerReferences": [owner],
    }


def render_docker_config_secret(
    job: Mapping[str, Any], *, name: str, docker_config_json: str
) -> dict[str, Any]:
    """A short-lived kubernetes.io/dockerconfigjson Secret owned by ``job`` (needs its uid)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": _owned_metadata(job, name),
        "data": {".dockerconfigjson": base64.b64encode(docker_config_json.encode()).decode()},
    }


def render_git_secret(job: Mapping[str, Any], *, name: str, values: Mapping[str, str]) -> dict[str, Any]:
    """An Opaque Secret with GIT_USERNAME/GIT_PASSWORD or GIT_TOKEN, owned by ``job``."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": _owned_metadata(job, name),
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


def render_configmap(job: Mapping[str, Any], *, archive: bytes, key: str) -> dict[str, Any]:
    """The ConfigMap that carries a packed local context, owned by ``job``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _owned_metadata(job, job["metadata"]["name"]),
        "binaryData": {key: base64.b64encode(archive).decode()},
    }


def destinations_of(job: Mapping[str, Any]) -> list[str]:
    """The destinations a rendered Job pushes to, from its annotation."""
    raw = ((job.get("metadata") or {}).get("annotations") or {}).get(f"{LABEL_PREFIX}/destinations", "[]")
    return [str(d) for d in json.loads(raw)]


def build_result(job: Mapping[str, Any], *, digest: str) -> dict[str, Any]:
    """The XCom of a successful build: first destination by digest, and where it went."""
    destinations = destinations_of(job)
    image = str(parse_reference(destinations[0]).with_digest(digest)) if destinations else None
    return {
        "image": image,
        "digest": digest,
        "destinations": destinations,
        "job_name": job["metadata"]["name"],
        "namespace": job["metadata"]["namespace"],
    }
