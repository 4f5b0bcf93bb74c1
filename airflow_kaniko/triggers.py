"""KanikoJobTrigger: watches a build Job in the triggerer and reports how it ended."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_kaniko.hooks import KanikoClusterHook
from airflow_kaniko.sharedwatch import shared_namespace_watch
from airflow_kaniko.status import StuckPolicy, status_to_event
from airflow_kaniko.waiting import wait_for_build

__all__ = ["KanikoJobTrigger"]


class KanikoJobTrigger(BaseTrigger):
    """Watch (not poll) a build Job and its pods; fire once with the final status.

    The event payload is ``status.status_to_event``: phase, reason, message, digest, pod,
    exit code. ``on_kill`` (Airflow 3.3+) deletes the Job when the deferred task is killed
    or marked failed; on older versions the Job's activeDeadlineSeconds (capped at the task's
    execution_timeout by the operator) bounds an orphaned build.
    """

    def __init__(
        self,
        *,
        job_name: str,
        namespace: str,
        kubernetes_conn_id: str | None = "kubernetes_default",
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        unschedulable_seconds: float = StuckPolicy.unschedulable_seconds,
        container_creating_seconds: float = StuckPolicy.container_creating_seconds,
        delete_on_kill: bool = True,
        **_older_arguments: Any,  # arguments of older serialized triggers are accepted and ignored
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.job_name = job_name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.unschedulable_seconds = unschedulable_seconds
        self.container_creating_seconds = container_creating_seconds
        self.delete_on_kill = delete_on_kill

    @classmethod
    def for_job(
        cls,
        hook: KanikoClusterHook,
        *,
        job_name: str,
        namespace: str,
        policy: StuckPolicy,
        delete_on_kill: bool = True,
    ) -> KanikoJobTrigger:
        """The trigger that waits for ``job_name`` on the cluster ``hook`` talks to."""
        return cls(
            job_name=job_name,
            namespace=namespace,
            **hook.connection_arguments(),
            unschedulable_seconds=policy.unschedulable_seconds,
            container_creating_seconds=policy.container_creating_seconds,
            delete_on_kill=delete_on_kill,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "namespace": self.namespace,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "config_file": self.config_file,
                "cluster_context": self.cluster_context,
                "in_cluster": self.in_cluster,
                "unschedulable_seconds": self.unschedulable_seconds,
                "container_creating_seconds": self.container_creating_seconds,
                "delete_on_kill": self.delete_on_kill,
            },
        )

    def _hook(self) -> KanikoClusterHook:
        return KanikoClusterHook(
            kubernetes_conn_id=self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        policy = StuckPolicy(
            unschedulable_seconds=self.unschedulable_seconds,
            container_creating_seconds=self.container_creating_seconds,
        )
        hook = self._hook()
        # All triggers of this process that watch the same cluster and namespace share one
        # watch of Jobs and one of pods (two connections, not two per build).
        cluster_key = (self.kubernetes_conn_id, self.config_file, self.cluster_context, self.in_cluster)
        async with shared_namespace_watch(cluster_key, self.namespace, hook.async_cluster) as watch:
            status = await wait_for_build(
                watch,
                self.namespace,
                self.job_name,
                policy=policy,
                on_status=lambda s: self.log.info(
                    "build %s: %s %s %s", self.job_name, s.phase.value, s.reason.value, s.message
                ),
            )
        event = status_to_event(status, namespace=self.namespace, job_name=self.job_name)
        yield TriggerEvent(event)  # type: ignore[no-untyped-call]

    async def on_kill(self) -> None:
        if not self.delete_on_kill:
            return
        async with self._hook().async_cluster() as cluster:
            existed = await cluster.delete_build(self.namespace, self.job_name)
        self.log.info(
            "deferred build killed: Job %s/%s %s",
            self.namespace,
            self.job_name,
            "deleted" if existed else "was already gone",
        )
