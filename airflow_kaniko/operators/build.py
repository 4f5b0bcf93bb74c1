"""KanikoBuildOperator: build and push an image with kaniko, as a Kubernetes Job."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.configuration import conf
from airflow.sdk import BaseOperator

from airflow_kaniko.attempts import Action, decide_attempt
from airflow_kaniko.build import (
    DEFAULT_EXECUTOR_IMAGE,
    DEFAULT_RESOURCES,
    KANIKO_CONTAINER,
    JobSettings,
    KanikoBuild,
    RenderedBuild,
    build_result,
    docker_config_secret_name,
    git_secret_name,
    render_build,
    render_configmap,
    render_docker_config_secret,
    render_git_secret,
)
from airflow_kaniko.cluster import JSON, OwnedFactory, SyncCluster
from airflow_kaniko.context import CONFIGMAP_ARCHIVE_KEY, CONFIGMAP_LIMIT_BYTES
from airflow_kaniko.errors import BuildFailedError, InvalidInputError
from airflow_kaniko.hooks import KanikoClusterHook, docker_config_from_connection
from airflow_kaniko.naming import BuildIdentity, build_key, job_name
from airflow_kaniko.operators._bad_input import fail_without_retry_on_bad_input
from airflow_kaniko.status import (
    BuildPhase,
    BuildStatus,
    CleanupPolicy,
    StuckPolicy,
    explain,
    should_delete,
    status_from_event,
)
from airflow_kaniko.triggers import KanikoJobTrigger
from airflow_kaniko.waiting import wait_for_build

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["KanikoBuildOperator", "identity_from_context"]

# A deferred build prints this much of kaniko's log when the task resumes.
RESUME_LOG_LINES = 2000


def identity_from_context(context: Context) -> BuildIdentity:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return BuildIdentity(
        dag_id=ti.dag_id,
        task_id=ti.task_id,
        run_id=ti.run_id,
        map_index=-1 if map_index is None else int(map_index),
        try_number=int(getattr(ti, "try_number", 1) or 1),
    )


class KanikoBuildOperator(BaseOperator):
    """Build an image from a context and a Dockerfile with kaniko, and push it.

    The build runs as a Kubernetes Job with a deterministic name per task instance and try, so a
    re-run of the same try reattaches to its Job (or returns its result) instead of building
    twice; a new try starts a new Job only when the previous one failed.

    Returns (XCom) ``{image, digest, destinations, job_name, namespace}``; ``image`` is the first
    destination by digest. With ``wait_for_completion=False`` it returns right after submitting
    (``digest`` and ``image`` None) and ``KanikoJobSensor`` waits later.

    :param context: where kaniko reads the context: ``git://``, ``s3://``, ``gs://``, Azure
        ``https://``, ``pvc://claim/path`` or ``local:///dir`` (packed into a ConfigMap), or the
        XCom of KanikoContextOperator.
    :param destinations: one or more image references (tags) to push to; no digests.
    :param docker_config_secret: an existing kubernetes.io/dockerconfigjson Secret for the push.
    :param registry_conn_id: or an Airflow connection (host, login, password) made into a
        short-lived Secret owned by the Job.
    :param git_conn_id: credentials for a git context (login, password or token), same way.
    :param cleanup: ``delete_succeeded`` (default), ``delete`` or ``keep`` finished Jobs; a
        stuck Job is always deleted; ``ttl_seconds_after_finished`` applies to what is kept.
    :param extra_args: kaniko flags passed through (e.g. ``--snapshot-mode=redo``).
    """

    template_fields: Sequence[str] = (
        "context",
        "dockerfile",
        "destinations",
        "build_args",
        "target",
        "push",
        "labels",
        "cache_repo",
        "namespace",
        "docker_config_secret",
        "executor_image",
        "extra_args",
        "pod_labels",
        "pod_annotations",
        "env",
        "registry_conn_id",
        "git_conn_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "build_args": "json",
        "labels": "json",
        "destinations": "json",
    }
    ui_color = "#8fb3e0"

    def __init__(
        self,
        *,
        context: str,
        destinations: str | Sequence[str],
        dockerfile: str = "Dockerfile",
        build_args: Mapping[str, str] | None = None,
        target: str | None = None,
        labels: Mapping[str, str] | None = None,
        cache: bool = False,
        cache_repo: str | None = None,
        push: bool = True,
        docker_config_secret: str | None = None,
        registry_conn_id: str | None = None,
        git_conn_id: str | None = None,
        namespace: str = "default",
        kubernetes_conn_id: str | None = "kubernetes_default",
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        executor_image: str = DEFAULT_EXECUTOR_IMAGE,
        container_resources: Mapping[str, Mapping[str, str | int | float]] | None = None,
        node_selector: Mapping[str, str] | None = None,
        tolerations: Sequence[Mapping[str, Any]] | None = None,
        service_account_name: str | None = None,
        automount_service_account_token: bool = False,
        image_pull_secrets: Sequence[str] | None = None,
        backoff_limit: int = 2,
        active_deadline_seconds: int = 3600,
        ttl_seconds_after_finished: int | None = 86400,
        cleanup: str | CleanupPolicy = CleanupPolicy.DELETE_SUCCEEDED,
        extra_args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        pod_labels: Mapping[str, str] | None = None,
        pod_annotations: Mapping[str, str] | None = None,
        unschedulable_seconds: float = 120.0,
        container_creating_seconds: float = 300.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        wait_for_completion: bool = True,
        stream_logs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.context = context
        self.destinations = destinations
        self.dockerfile = dockerfile
        # Templated fields are kept as given (they may be XComArgs); render() normalises them.
        self.build_args = build_args or {}
        self.target = target
        self.labels = labels or {}
        self.cache = cache
        self.cache_repo = cache_repo
        self.push = push
        self.docker_config_secret = docker_config_secret
        self.registry_conn_id = registry_conn_id
        self.git_conn_id = git_conn_id
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.executor_image = executor_image
        self.container_resources = (
            container_resources if container_resources is not None else DEFAULT_RESOURCES
        )
        self.node_selector = dict(node_selector or {})
        self.tolerations = list(tolerations or [])
        self.service_account_name = service_account_name
        self.automount_service_account_token = automount_service_account_token
        self.image_pull_secrets = list(image_pull_secrets or [])
        self.backoff_limit = backoff_limit
        self.active_deadline_seconds = active_deadline_seconds
        self.ttl_seconds_after_finished = ttl_seconds_after_finished
        try:
            self.cleanup = CleanupPolicy(cleanup)
        except ValueError:
            allowed = ", ".join(p.value for p in CleanupPolicy)
            raise InvalidInputError(f"cleanup {cleanup!r} is not valid: allowed are {allowed}") from None
        if docker_config_secret and registry_conn_id:
            raise InvalidInputError(
                f"both docker_config_secret {docker_config_secret!r} and registry_conn_id {registry_conn_id!r} "
                "are set: give one source of registry credentials"
            )
        self.extra_args = extra_args or []
        self.env = env or {}
        self.pod_labels = pod_labels or {}
        self.pod_annotations = pod_annotations or {}
        self.stuck_policy = StuckPolicy(
            unschedulable_seconds=unschedulable_seconds, container_creating_seconds=container_creating_seconds
        )
        self.deferrable = deferrable
        self.wait_for_completion = wait_for_completion
        self.stream_logs = stream_logs
        self._job_name: str | None = None

    # ---- pieces ---------------------------------------------------------------------------

    @cached_property
    def hook(self) -> KanikoClusterHook:
        return KanikoClusterHook(
            kubernetes_conn_id=self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    def _deadline_seconds(self) -> int:
        """The Job may not outlive the task: an orphaned build ends at the task's timeout."""
        timeout = self.execution_timeout
        if isinstance(timeout, timedelta) and timeout.total_seconds() >= 1:
            return min(self.active_deadline_seconds, int(timeout.total_seconds()))
        return self.active_deadline_seconds

    def render(self, identity: BuildIdentity) -> RenderedBuild:
        """The Job this task would create; every input is validated here."""
        destinations = [self.destinations] if isinstance(self.destinations, str) else list(self.destinations)
        build = KanikoBuild(
            context=self.context,
            destinations=destinations,
            dockerfile=self.dockerfile,
            build_args=dict(self.build_args or {}),
            target=self.target or None,
            labels=dict(self.labels or {}),
            cache=self.cache,
            cache_repo=self.cache_repo,
            push=bool(self.push),
            extra_args=list(self.extra_args or []),
        )
        name = job_name(identity)
        settings = JobSettings(
            namespace=self.namespace,
            executor_image=self.executor_image,
            docker_config_secret=self.docker_config_secret
            or (docker_config_secret_name(name) if self.registry_conn_id else None),
            git_secret=git_secret_name(name) if self.git_conn_id else None,
            resources=self.container_resources,
            node_selector=self.node_selector,
            tolerations=self.tolerations,
            service_account_name=self.service_account_name,
            automount_service_account_token=self.automount_service_account_token,
            image_pull_secrets=self.image_pull_secrets,
            backoff_limit=self.backoff_limit,
            active_deadline_seconds=self._deadline_seconds(),
            ttl_seconds_after_finished=self.ttl_seconds_after_finished,
            pod_labels=dict(self.pod_labels or {}),
            pod_annotations=dict(self.pod_annotations or {}),
            env=dict(self.env or {}),
        )
        return render_build(build, settings, identity)

    def _owned_objects(self, rendered: RenderedBuild) -> list[OwnedFactory]:
        """Secrets and ConfigMap created with (and owned by) the Job. Built before anything is created."""
        owned: list[OwnedFactory] = []
        name = rendered.name
        if self.registry_conn_id:
            docker_config = docker_config_from_connection(self.registry_conn_id)
            owned.append(
                lambda job: (
                    "secrets",
                    render_docker_config_secret(
                        job, name=docker_config_secret_name(name), docker_config_json=docker_config
                    ),
                )
            )
        if self.git_conn_id:
            values = _git_credentials(self.git_conn_id)
            owned.append(
                lambda job: ("secrets", render_git_secret(job, name=git_secret_name(name), values=values))
            )
        if rendered.context.local_directory is not None:
            from airflow_kaniko.packing import pack_to_bytes

            archive, packed = pack_to_bytes(
                rendered.context.local_directory,
                dockerfile=self.dockerfile,
                max_size=CONFIGMAP_LIMIT_BYTES,
                limit_name="a ConfigMap (1 MiB); upload the context with KanikoContextOperator(upload_to=...) instead",
            )
            self.log.info(
                "packed %s: %d bytes, sha256 %s", rendered.context.local_directory, packed.size, packed.sha256
            )
            owned.append(
                lambda job: ("configmaps", render_configmap(job, archive=archive, key=CONFIGMAP_ARCHIVE_KEY))
            )
        return owned

    def _check_existing_secrets(self, cluster: SyncCluster) -> None:
        for secret in (self.docker_config_secret, *self.image_pull_secrets):
            if secret and not cluster.exists("secrets", self.namespace, secret):
                raise InvalidInputError(
                    f"Secret {secret!r} does not exist in namespace {self.namespace!r}: create it "
                    "(kubectl create secret docker-registry ...) or use registry_conn_id"
                )

    # ---- Airflow entry points ----------------------------------------------------------------

    @fail_without_retry_on_bad_input()
    def execute(self, context: Context) -> dict[str, Any]:
        identity = identity_from_context(context)
        rendered = self.render(identity)
        cluster = self.hook.sync_cluster()
        decision = decide_attempt(
            cluster.find_jobs(self.namespace, build_key(identity)),
            job_name_for_try=rendered.name,
            policy=self.stuck_policy,
        )
        self._job_name = decision.job_name
        if decision.action is Action.DONE:
            assert decision.status is not None
            self.log.info(
                "Job %s of this task already built the image; not building again", decision.job_name
            )
            return self._finish(cluster, decision.status)
        if decision.action is Action.FAIL:
            assert decision.status is not None
            return self._finish(cluster, decision.status)
        if decision.action is Action.REATTACH:
            self.log.info("reattaching to running Job %s/%s", self.namespace, decision.job_name)
        else:
            self._check_existing_secrets(cluster)
            owned = self._owned_objects(rendered)
            cluster.create_build(rendered.job, owned)
            self.log.info("created Job %s/%s", self.namespace, rendered.name)

        if not self.wait_for_completion:
            return {
                "image": None,
                "digest": None,
                "destinations": list(_as_list(self.destinations)),
                "job_name": decision.job_name,
                "namespace": self.namespace,
            }
        if self.deferrable:
            self.defer(
                trigger=KanikoJobTrigger.for_job(
                    self.hook, job_name=decision.job_name, namespace=self.namespace, policy=self.stuck_policy
                ),
                method_name="execute_complete",
            )
        try:
            status = asyncio.run(self._wait(decision.job_name))
        except BaseException:
            # Timed out or interrupted while waiting: the build must not outlive the task.
            self._delete(cluster, decision.job_name)
            raise
        return self._finish(cluster, status)

    async def _wait(self, job_name: str) -> BuildStatus:
        extras = self.hook.connection_extras() if self.kubernetes_conn_id else None
        async with self.hook.async_cluster(connection_extras=extras) as cluster:
            return await wait_for_build(
                cluster,
                self.namespace,
                job_name,
                policy=self.stuck_policy,
                on_status=self._report,
                on_log=self.log.info if self.stream_logs else None,
            )

    def _report(self, status: BuildStatus) -> None:
        text = f"build {self._job_name}: {status.phase.value} ({status.reason.value})"
        self.log.info("%s %s", text, status.message)

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> dict[str, Any]:
        status = status_from_event(event)
        self._job_name = str(event["job_name"])
        cluster = self.hook.sync_cluster()
        if status.pod_name and self.stream_logs:
            text = cluster.read_log(
                self.namespace, status.pod_name, KANIKO_CONTAINER, tail_lines=RESUME_LOG_LINES
            )
            for line in text.splitlines():
                self.log.info("[%s] %s", status.pod_name, line)
        return self._finish(cluster, status)

    def _finish(self, cluster: SyncCluster, status: BuildStatus) -> dict[str, Any]:
        name = self._job_name
        assert name is not None
        job: JSON | None = None
        if status.phase is BuildPhase.SUCCEEDED:
            job = cluster.read_snapshot(self.namespace, name).job
        log = self._failed_pod_log(cluster, status)  # before cleanup takes the pod away
        if should_delete(self.cleanup, status):
            self._delete(cluster, name)
        if status.phase is BuildPhase.SUCCEEDED and job is not None and status.digest:
            result = build_result(job, digest=status.digest)
            self.log.info("built %s", result["image"])
            return result
        raise BuildFailedError(
            f"kaniko build {self.namespace}/{name} {status.phase.value} ({status.reason.value}): {explain(status, log)}"
        )

    def _failed_pod_log(self, cluster: SyncCluster, status: BuildStatus) -> str | None:
        if status.phase is not BuildPhase.FAILED or not status.pod_name:
            return None
        try:
            return cluster.read_log(
                self.namespace, status.pod_name, KANIKO_CONTAINER, tail_lines=RESUME_LOG_LINES
            )
        except Exception:  # the pod may be gone already; the status message stands on its own
            return None

    def _delete(self, cluster: SyncCluster, name: str) -> None:
        try:
            if cluster.delete_build(self.namespace, name, self._owned_names(name)):
                self.log.info("deleted Job %s/%s and what it owned", self.namespace, name)
        except Exception:
            self.log.exception("could not delete Job %s/%s", self.namespace, name)

    def _owned_names(self, name: str) -> list[tuple[str, str]]:
        """What this operator creates with a Job (and so deletes with it)."""
        owned = []
        if self.registry_conn_id:
            owned.append(("secrets", docker_config_secret_name(name)))
        if self.git_conn_id:
            owned.append(("secrets", git_secret_name(name)))
        if str(self.context).startswith("local://"):
            owned.append(("configmaps", name))
        return owned

    def on_kill(self) -> None:
        if self._job_name:
            self._delete(self.hook.sync_cluster(), self._job_name)


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _git_credentials(conn_id: str) -> dict[str, str]:
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    values = {"GIT_USERNAME": conn.login or "", "GIT_PASSWORD": conn.password or ""}
    token = (conn.extra_dejson or {}).get("token")
    if token:
        values["GIT_TOKEN"] = str(token)
    return {k: v for k, v in values.items() if v}
