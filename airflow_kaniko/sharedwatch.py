"""One watch of build Jobs and one of their pods per namespace, shared by every trigger of a process.

A triggerer may wait for hundreds of builds at once. Two watches per build would cost two TLS
connections (about 250 KiB each) per build; here a namespace costs two, whatever the number
of builds. Each waiter still sees exactly what ``AsyncCluster.watch_build`` would give it:
snapshots of its own Job and pods, on every change and on every tick.

The hub lives as long as it has subscribers, on the event loop that created it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from airflow_kaniko.cluster import JOB_NAME_LABEL, JSON, AsyncCluster, BuildSnapshot

__all__ = ["MANAGED_SELECTOR", "NamespaceWatch", "shared_namespace_watch"]

MANAGED_SELECTOR = "app.kubernetes.io/managed-by=airflow-kaniko"
ClusterFactory = Callable[[], contextlib.AbstractAsyncContextManager[AsyncCluster]]


@dataclass
class NamespaceWatch:
    """The build Jobs and pods of one namespace, kept current by two watches."""

    cluster: AsyncCluster
    namespace: str
    jobs: dict[str, JSON] = field(default_factory=dict)
    pods_by_job: dict[str, dict[str, JSON]] = field(default_factory=dict)
    deleted_jobs: set[str] = field(default_factory=set)
    listed: set[str] = field(default_factory=set)
    waiters: dict[str, set[asyncio.Event]] = field(default_factory=dict)
    failure: BaseException | None = None

    # ---- state, no I/O ------------------------------------------------------------------

    def knows(self, job_name: str) -> bool:
        """True once the watch has seen this Job (or its deletion): its view is then current."""
        return len(self.listed) == 2 and (job_name in self.jobs or job_name in self.deleted_jobs)

    def snapshot(self, job_name: str) -> BuildSnapshot:
        return BuildSnapshot(
            job=self.jobs.get(job_name), pods=list(self.pods_by_job.get(job_name, {}).values())
        )

    def apply(self, kind: str, event_type: str, obj: Any) -> set[str] | None:
        """Apply one event; return the Job names it concerns (None: all of them)."""
        if event_type == "RESET":
            self.listed.add(kind)
            if kind == "job":
                self.jobs = {j["metadata"]["name"]: j for j in obj}
            else:
                self.pods_by_job = {}
                for pod in obj:
                    self._put_pod(pod)
            return None
        if event_type == "BOOKMARK":
            return set()
        name = obj["metadata"]["name"]
        if kind == "job":
            if event_type == "DELETED":
                self.jobs.pop(name, None)
                self.deleted_jobs.add(name)
            else:
                self.jobs[name] = obj
                self.deleted_jobs.discard(name)
            return {name}
        job_name = (obj["metadata"].get("labels") or {}).get(JOB_NAME_LABEL, "")
        if event_type == "DELETED":
            self.pods_by_job.get(job_name, {}).pop(name, None)
        else:
            self._put_pod(obj)
        return {job_name}

    def _put_pod(self, pod: JSON) -> None:
        job_name = (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL, "")
        self.pods_by_job.setdefault(job_name, {})[pod["metadata"]["name"]] = pod

    def _notify(self, names: set[str] | None) -> None:
        for job_name, events in self.waiters.items():
            if names is None or job_name in names:
                for event in events:
                    event.set()

    # ---- the watch and the waiters ---------------------------------------------------------

    async def run(self) -> None:
        queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
        query = {"labelSelector": MANAGED_SELECTOR}
        tasks = [
            asyncio.create_task(self.cluster.watch_kind("job", self.namespace, query, queue)),
            asyncio.create_task(self.cluster.watch_kind("pod", self.namespace, query, queue)),
        ]
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait([getter, *tasks], return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:
                    if task in done:
                        getter.cancel()
                        task.result()
                self._notify(self.apply(*getter.result()))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a watch that gave up: every waiter hears it
            self.failure = exc
            self._notify(None)
            raise
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def watch_build(
        self, namespace: str, name: str, *, tick_seconds: float = 5.0
    ) -> AsyncGenerator[BuildSnapshot, None]:
        """Snapshots of one build, as ``AsyncCluster.watch_build`` yields them."""
        assert namespace == self.namespace
        event = asyncio.Event()
        self.waiters.setdefault(name, set()).add(event)
        try:
            # Until the shared watch has seen this Job, a direct read stands in for it (the Job
            # may have been created just before the watch heard of it).
            direct = await self.cluster.read_snapshot(namespace, name)
            while True:
                if self.failure is not None:
                    raise self.failure
                yield self.snapshot(name) if self.knows(name) else direct
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), timeout=tick_seconds)
                event.clear()
        finally:
            self.waiters[name].discard(event)
            if not self.waiters[name]:
                del self.waiters[name]

    def follow_log(self, namespace: str, pod: str, container: str) -> AsyncIterator[str]:
        return self.cluster.follow_log(namespace, pod, container)


@dataclass
class _Hub:
    watch: NamespaceWatch | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    users: int = 0
    task: asyncio.Task[None] | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None


_HUBS: dict[tuple[int, Hashable, str], _Hub] = {}


async def _serve(hub: _Hub, open_cluster: ClusterFactory, namespace: str) -> None:
    try:
        async with open_cluster() as cluster:
            hub.watch = NamespaceWatch(cluster=cluster, namespace=namespace)
            hub.ready.set()
            runner = asyncio.create_task(hub.watch.run())
            stopper = asyncio.create_task(hub.stop.wait())
            await asyncio.wait([runner, stopper], return_when=asyncio.FIRST_COMPLETED)
            for task in (runner, stopper):
                task.cancel()
            await asyncio.gather(runner, stopper, return_exceptions=True)
    except BaseException as exc:
        hub.error = exc
        hub.ready.set()
        if not isinstance(exc, asyncio.CancelledError):
            raise


@contextlib.asynccontextmanager
async def shared_namespace_watch(
    key: Hashable, namespace: str, open_cluster: ClusterFactory
) -> AsyncIterator[NamespaceWatch]:
    """The process's shared watch of ``namespace`` on the cluster ``key`` names.

    ``open_cluster`` opens the AsyncCluster the first user needs; it is closed when the last
    user leaves.
    """
    loop_key = (id(asyncio.get_running_loop()), key, namespace)
    hub = _HUBS.get(loop_key)
    if hub is None or hub.error is not None or hub.stop.is_set():
        hub = _HUBS[loop_key] = _Hub()
        hub.task = asyncio.create_task(_serve(hub, open_cluster, namespace))
    hub.users += 1
    try:
        await hub.ready.wait()
        if hub.error is not None or hub.watch is None:
            raise hub.error or RuntimeError("shared watch failed to start")
        yield hub.watch
    finally:
        hub.users -= 1
        if hub.users == 0:
            hub.stop.set()
            if _HUBS.get(loop_key) is hub:
                del _HUBS[loop_key]
            if hub.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await hub.task
