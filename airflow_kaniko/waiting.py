"""Wait for a build: the one loop, used by the trigger and by the operator's non-deferred path.

The operator runs it with ``asyncio.run``; the trigger awaits it in the triggerer. The loop
decides nothing itself: ``status.build_status`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from airflow_kaniko.build import KANIKO_CONTAINER
from airflow_kaniko.cluster import BuildSnapshot
from airflow_kaniko.status import BuildStatus, StuckPolicy, build_status

__all__ = ["wait_for_build"]

# After the build ends, give log followers this long to deliver their last lines.
_LOG_DRAIN_SECONDS = 5.0


class WatchingCluster(Protocol):
    def watch_build(
        self, namespace: str, name: str, *, tick_seconds: float = ...
    ) -> AsyncGenerator[BuildSnapshot, None]: ...

    def follow_log(self, namespace: str, pod: str, container: str) -> AsyncIterator[str]: ...


def _container_started(pod: Mapping[str, Any]) -> bool:
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        if cs.get("name") == KANIKO_CONTAINER:
            state = cs.get("state") or {}
            return bool(state.get("running") or state.get("terminated"))
    return False


async def _forward_log(
    cluster: WatchingCluster, namespace: str, pod: str, sink: Callable[[str], None]
) -> None:
    try:
        async for line in cluster.follow_log(namespace, pod, KANIKO_CONTAINER):
            sink(f"[{pod}] {line}")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a log stream that breaks must not fail the build
        sink(f"[{pod}] log stream ended: {exc}")


async def wait_for_build(
    cluster: WatchingCluster,
    namespace: str,
    name: str,
    *,
    policy: StuckPolicy | None = None,
    tick_seconds: float = 5.0,
    on_status: Callable[[BuildStatus], None] | None = None,
    on_log: Callable[[str], None] | None = None,
) -> BuildStatus:
    """Watch the Job and its pods until the build finishes; return its final status.

    ``on_status`` hears every change of phase/reason/message; ``on_log`` (if given) receives
    kaniko's log lines live, from every pod the Job starts.
    """
    followers: dict[str, asyncio.Task[None]] = {}
    last: tuple[str, str, str] | None = None
    status: BuildStatus | None = None
    try:
        # aclosing: leaving the loop closes the watch (its streams and tasks) now, not at GC.
        async with contextlib.aclosing(
            cluster.watch_build(namespace, name, tick_seconds=tick_seconds)
        ) as snapshots:
            async for snapshot in snapshots:
                status = build_status(snapshot.job, snapshot.pods, policy=policy)
                key = (status.phase.value, status.reason.value, status.message)
                if on_status is not None and key != last:
                    on_status(status)
                last = key
                if on_log is not None:
                    for pod in snapshot.pods:
                        pod_name = pod["metadata"]["name"]
                        if pod_name not in followers and _container_started(pod):
                            followers[pod_name] = asyncio.create_task(
                                _forward_log(cluster, namespace, pod_name, on_log)
                            )
                if status.finished:
                    break
    finally:
        if followers:
            _, pending = await asyncio.wait(followers.values(), timeout=_LOG_DRAIN_SECONDS)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
    assert status is not None  # watch_build yields at least once or raises
    return status
