"""Unit-tier fixtures: an in-memory Kubernetes API and a scripted Job controller on top of it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_kaniko.cluster import AsyncCluster, SyncCluster
from tests.support.fake_kube import (
    FakeAsyncApiClient,
    FakeKube,
    FakeSyncApiClient,
    pod_for,
    set_job_condition,
    set_pod,
)

DIGEST = "sha256:" + "ab" * 32


class FakeHook:
    """Stands in for KanikoClusterHook: the same drivers, on the in-memory API."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.async_clusters: list[AsyncCluster] = []

    def sync_cluster(self) -> SyncCluster:
        return SyncCluster(FakeSyncApiClient(self.kube))

    @contextlib.asynccontextmanager
    async def async_cluster(
        self, *, connection_extras: dict[str, Any] | None = None
    ) -> AsyncIterator[AsyncCluster]:
        cluster = AsyncCluster(FakeAsyncApiClient(self.kube))
        self.async_clusters.append(cluster)
        yield cluster

    def connection_extras(self) -> dict[str, Any]:
        return {}

    def connection_arguments(self) -> dict[str, Any]:
        return {
            "kubernetes_conn_id": "kubernetes_default",
            "config_file": None,
            "cluster_context": None,
            "in_cluster": None,
        }


Step = Callable[[FakeKube, str, str], None]


class Controller:
    """Plays kubelet and Job controller: runs a script of steps when a Job may start."""

    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube
        self.script: list[Step] = []
        self.threads: list[threading.Thread] = []
        kube.on_create.append(self._on_job)

    def _on_job(self, kind: str, job: dict[str, Any]) -> None:
        if kind != "jobs" or job["spec"].get("suspend"):
            return
        steps = list(self.script)
        thread = threading.Thread(target=self._run, args=(job, steps), daemon=True)
        self.threads.append(thread)
        thread.start()

    def _run(self, job: dict[str, Any], steps: list[Step]) -> None:
        ns, name = job["metadata"]["namespace"], job["metadata"]["name"]
        for step in steps:
            time.sleep(0.05)
            if self.kube.get("jobs", ns, name) is None:
                return
            step(self.kube, ns, name)

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=10)


# ---- steps -----------------------------------------------------------------------------


def start_pod(index: int = 0) -> Step:
    def step(kube: FakeKube, ns: str, job: str) -> None:
        kube.put("pods", pod_for(kube.get("jobs", ns, job) or {}, index), event="ADDED")

    return step


def run_pod(index: int = 0, log: str = "") -> Step:
    def step(kube: FakeKube, ns: str, job: str) -> None:
        kube.logs[f"{job}-{index}"] = log
        set_pod(
            kube,
            ns,
            f"{job}-{index}",
            phase="Running",
            state={"running": {"startedAt": "2026-12-03T00:00:00Z"}},
        )

    return step


def finish_pod(
    index: int = 0, *, exit_code: int = 0, message: str = DIGEST, reason: str = "Completed"
) -> Step:
    def step(kube: FakeKube, ns: str, job: str) -> None:
        term = {
            "exitCode": exit_code,
            "reason": reason if exit_code == 0 else (reason if reason != "Completed" else "Error"),
            "message": message,
        }
        set_pod(
            kube,
            ns,
            f"{job}-{index}",
            phase="Succeeded" if exit_code == 0 else "Failed",
            state={"terminated": term},
        )

    return step


def complete_job() -> Step:
    def step(kube: FakeKube, ns: str, job: str) -> None:
        set_job_condition(kube, ns, job, "Complete", succeeded=1)

    return step


def fail_job(
    reason: str = "BackoffLimitExceeded", message: str = "Job has reached the specified backoff limit"
) -> Step:
    def step(kube: FakeKube, ns: str, job: str) -> None:
        set_job_condition(kube, ns, job, "Failed", reason, message, failed=1)

    return step


def wait_pod(
    index: int = 0, reason: str = "ImagePullBackOff", message: str = "Back-off pulling image"
) -> Step:
    def step(kube: FakeKube, ns: str, job: str) -> None:
        set_pod(
            kube,
            ns,
            f"{job}-{index}",
            phase="Pending",
            state={"waiting": {"reason": reason, "message": message}},
        )

    return step


SUCCESS = [start_pod(), run_pod(log="INFO Building\nINFO Pushing image\n"), finish_pod(), complete_job()]


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def controller(kube: FakeKube) -> Iterator[Controller]:
    ctl = Controller(kube)
    yield ctl
    ctl.join()


@pytest.fixture
def fake_hook(kube: FakeKube) -> FakeHook:
    return FakeHook(kube)


def task_context(*, try_number: int = 1, task_id: str = "build", map_index: int = -1) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="images",
        task_id=task_id,
        run_id="scheduled__2026-12-03T00:00:00+00:00",
        map_index=map_index,
        try_number=try_number,
    )
    return {"ti": ti}
