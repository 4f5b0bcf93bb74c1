"""KanikoJobSensor: wait for a build Job by name (poke, reschedule or deferrable)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.configuration import conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_kaniko.build import KANIKO_CONTAINER, build_result
from airflow_kaniko.errors import BuildFailedError
from airflow_kaniko.hooks import KanikoClusterHook
from airflow_kaniko.operators._bad_input import fail_without_retry_on_bad_input
from airflow_kaniko.status import (
    BuildPhase,
    BuildStatus,
    StuckPolicy,
    build_status,
    explain,
    status_from_event,
)
from airflow_kaniko.triggers import KanikoJobTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["KanikoJobSensor"]


class KanikoJobSensor(BaseSensorOperator):
    """Wait for the build Job ``job_name`` and return the same XCom as KanikoBuildOperator.

    Typically fed from a ``KanikoBuildOperator(wait_for_completion=False)``'s XCom:
    ``job_name="{{ ti.xcom_pull('build')['job_name'] }}"``. A failed or stuck build fails the
    sensor at once with the reason; it does not wait for the timeout.
    """

    template_fields: Sequence[str] = ("job_name", "namespace")

    def __init__(
        self,
        *,
        job_name: str,
        namespace: str = "default",
        kubernetes_conn_id: str | None = "kubernetes_default",
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
        unschedulable_seconds: float = 120.0,
        container_creating_seconds: float = 300.0,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", 30)
        super().__init__(**kwargs)
        self.job_name = job_name
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster
        self.stuck_policy = StuckPolicy(
            unschedulable_seconds=unschedulable_seconds, container_creating_seconds=container_creating_seconds
        )
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> KanikoClusterHook:
        return KanikoClusterHook(
            kubernetes_conn_id=self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        if (result := self.poke(context)) and isinstance(result, PokeReturnValue) and result.is_done:
            return result.xcom_value
        self.defer(
            trigger=KanikoJobTrigger.for_job(
                self.hook,
                job_name=self.job_name,
                namespace=self.namespace,
                policy=self.stuck_policy,
                # The sensor watches a build it did not start: killing it leaves the build alone.
                delete_on_kill=False,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout) if self.timeout else None,
        )

    @fail_without_retry_on_bad_input()
    def poke(self, context: Context) -> PokeReturnValue | bool:
        snapshot = self.hook.sync_cluster().read_snapshot(self.namespace, self.job_name)
        status = build_status(snapshot.job, snapshot.pods, policy=self.stuck_policy)
        self.log.info(
            "build %s/%s: %s (%s) %s",
            self.namespace,
            self.job_name,
            status.phase.value,
            status.reason.value,
            status.message,
        )
        return self._result(snapshot.job, status)

    def _result(self, job: Mapping[str, Any] | None, status: BuildStatus) -> PokeReturnValue | bool:
        if status.phase is BuildPhase.RUNNING:
            return False
        if status.phase is BuildPhase.SUCCEEDED and job is not None and status.digest:
            return PokeReturnValue(is_done=True, xcom_value=build_result(job, digest=status.digest))
        log = None
        if status.phase is BuildPhase.FAILED and status.pod_name:
            try:
                log = self.hook.sync_cluster().read_log(
                    self.namespace, status.pod_name, KANIKO_CONTAINER, tail_lines=2000
                )
            except Exception:  # the pod may be gone; the status message stands on its own
                log = None
        raise BuildFailedError(
            f"kaniko build {self.namespace}/{self.job_name} {status.phase.value} ({status.reason.value}): "
            f"{explain(status, log)}"
        )

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        status = status_from_event(event)
        job = self.hook.sync_cluster().read_snapshot(self.namespace, self.job_name).job
        result = self._result(job, status)
        assert isinstance(result, PokeReturnValue)
        return result.xcom_value
