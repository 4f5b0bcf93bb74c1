"""An in-memory Kubernetes API at the ApiClient seam (``call_api``), for unit tests.

It stores objects, answers list/get/create/patch/delete with label and field selectors,
serves watch streams (with resourceVersions and bookmarks), and lets a test break a watch
mid-stream or answer 410 Gone, the way kopf's fake API server replays streams. Both the
sync and the async client shapes are served, so ``SyncCluster`` and ``AsyncCluster`` run
unchanged on top of it. A small scripted "kubelet + Job controller" drives pods.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]
_KINDS = {"jobs": "Job", "pods": "Pod", "secrets": "Secret", "configmaps": "ConfigMap"}


class FakeApiException(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = message
        self.body = json.dumps({"message": message})


def now_iso(offset: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(obj: JSON, query: dict[str, str]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, (query.get("labelSelector") or "").split(",")):
        key, sep, value = term.partition("=")
        if sep and labels.get(key) != value:
            return False
        if not sep and key not in labels:
            return False
    fs = query.get("fieldSelector") or ""
    return not (fs.startswith("metadata.name=") and obj["metadata"]["name"] != fs.split("=", 1)[1])


@dataclass
class _Watch:
    kind: str
    namespace: str
    query: dict[str, str]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[bytes | None]


class _SyncResponse:
    def __init__(self, data: bytes) -> None:
        self.data = data


class _AsyncResponse:
    def __init__(
        self,
        data: bytes | None = None,
        watch: _Watch | None = None,
        kube: FakeKube | None = None,
        status: int = 200,
    ) -> None:
        self.status = status
        self._data = data
        self._watch = watch
        self._kube = kube
        self.content = self._lines()

    async def read(self) -> bytes:
        return self._data or b""

    def release(self) -> None:
        if self._kube is not None and self._watch in self._kube.watches:
            self._kube.watches.remove(self._watch)

    async def _lines(self) -> Any:
        if self._watch is None:
            for line in (self._data or b"").splitlines(keepends=True):
                yield line
            return
        while True:
            item = await self._watch.queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


@dataclass
class FakeKube:
    objects: dict[tuple[str, str, str], JSON] = field(default_factory=dict)
    logs: dict[str, str] = field(default_factory=dict)
    log_errors: dict[str, tuple[int, str]] = field(default_factory=dict)  # pod -> (status, message)
    version: int = 100
    requests: list[tuple[str, str]] = field(default_factory=list)
    watches: list[_Watch] = field(default_factory=list)
    on_create: list[Callable[[str, JSON], None]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)
    gone_before: int = 0  # watches from a resourceVersion below this get 410 Gone

    # ---- state changes (also used by scripted controllers) ----

    def _bump(self, obj: JSON) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)

    def _emit(self, kind: str, event_type: str, obj: JSON) -> None:
        line = (json.dumps({"type": event_type, "object": obj}) + "\n").encode()
        for w in list(self.watches):
            if w.loop.is_closed():
                self.watches.remove(w)
                continue
            if w.kind == kind and w.namespace == obj["metadata"]["namespace"] and _matches(obj, w.query):
                w.loop.call_soon_threadsafe(w.queue.put_nowait, line)

    def put(self, kind: str, obj: JSON, *, event: str = "MODIFIED") -> JSON:
        with self.lock:
            obj = copy.deepcopy(obj)
            meta = obj["metadata"]
            meta.setdefault("uid", f"uid-{meta['name']}")
            meta.setdefault("creationTimestamp", now_iso())
            self._bump(obj)
            self.objects[(kind, meta["namespace"], meta["name"])] = obj
            self._emit(kind, event, obj)
            return obj

    def get(self, kind: str, namespace: str, name: str) -> JSON | None:
        with self.lock:
            obj = self.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def update(self, kind: str, namespace: str, name: str, mutate: Callable[[JSON], None]) -> JSON:
        with self.lock:
            obj = self.objects[(kind, namespace, name)]
            mutate(obj)
            self._bump(obj)
            self._emit(kind, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def remove(self, kind: str, namespace: str, name: str) -> JSON | None:
        with self.lock:
            obj = self.objects.pop((kind, namespace, name), None)
            if obj is not None:
                self._bump(obj)
                self._emit(kind, "DELETED", obj)
                if kind == "jobs":  # the garbage collector, at once
                    for (k, ns, n), other in list(self.objects.items()):
                        refs = other["metadata"].get("ownerReferences") or ()
                        labels = other["metadata"].get("labels") or {}
                        if ns == namespace and (
                            any(r.get("name") == name for r in refs)
                            or labels.get("batch.kubernetes.io/job-name") == name
                        ):
                            self.remove(k, ns, n)
            return obj

    def list(self, kind: str, namespace: str, query: dict[str, str] | None = None) -> list[JSON]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (k, ns, _), o in sorted(self.objects.items())
                if k == kind and ns == namespace and _matches(o, query or {})
            ]

    def break_watches(self, error: BaseException | None = None) -> None:
        """End every open watch stream (an apiserver restart), optionally with an error."""
        for w in list(self.watches):
            w.loop.call_soon_threadsafe(w.queue.put_nowait, error)  # type: ignore[arg-type]
        self.watches.clear()

    def expire_watches(self) -> None:
        """Answer the open watches with 410 Gone, as an apiserver does when history is compacted."""
        self.gone_before = self.version + 1
        gone = (
            json.dumps({"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}})
            + "\n"
        ).encode()
        for w in list(self.watches):
            w.loop.call_soon_threadsafe(w.queue.put_nowait, gone)
            w.loop.call_soon_threadsafe(w.queue.put_nowait, None)
        self.watches.clear()

    # ---- the ApiClient seam ----

    def handle(self, path: str, method: str, kwargs: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        query = dict(kwargs.get("query_params") or [])
        body = kwargs.get("body")
        self.requests.append((method, path))
        parts = path.strip("/").split("/")
        # /api/v1/namespaces/NS/KIND[/NAME[/log]] or /apis/batch/v1/namespaces/NS/KIND[/NAME]
        idx = parts.index("namespaces")
        namespace, kind = parts[idx + 1], parts[idx + 2]
        name = parts[idx + 3] if len(parts) > idx + 3 else None
        sub = parts[idx + 4] if len(parts) > idx + 4 else None
        if sub == "log":
            assert name is not None
            if self.get("pods", namespace, name) is None:
                raise FakeApiException(404, f'pods "{name}" not found')
            return self.logs.get(name, ""), query
        if method == "POST":
            assert body is not None
            if self.get(kind, namespace, body["metadata"]["name"]) is not None:
                raise FakeApiException(409, f'{kind} "{body["metadata"]["name"]}" already exists')
            created = self.put(kind, {**body, "status": body.get("status", {})}, event="ADDED")
            for hook in self.on_create:
                hook(kind, created)
            return created, query
        if name is None and method == "GET":
            if query.get("watch") == "true":
                return None, query
            with self.lock:
                items = self.list(kind, namespace, query)
                return {
                    "kind": "List",
                    "metadata": {"resourceVersion": str(self.version)},
                    "items": items,
                }, query
        if method == "GET":
            obj = self.get(kind, namespace, name or "")
            if obj is None:
                raise FakeApiException(404, f'{kind} "{name}" not found')
            return obj, query
        if method == "PATCH":

            def merge(obj: JSON) -> None:
                obj["spec"].update(body["spec"])

            obj = self.update(kind, namespace, name or "", merge)
            for hook in self.on_create:
                hook(kind, obj)
            return obj, query
        if method == "DELETE":
            obj = self.remove(kind, namespace, name or "")
            if obj is None:
                raise FakeApiException(404, f'{kind} "{name}" not found')
            return {"kind": "Status", "status": "Success"}, query
        raise AssertionError(f"unexpected {method} {path}")


class FakeSyncApiClient:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    def call_api(self, resource_path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        answer, _ = self.kube.handle(resource_path, method, kwargs)
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        return _SyncResponse(data)


class FakeAsyncApiClient:
    def __init__(self, kube: FakeKube) -> None:
        self.kube = kube

    async def call_api(self, resource_path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        query = dict(kwargs.get("query_params") or [])
        if query.get("watch") == "true":
            self.kube.requests.append(("WATCH", resource_path))
            if int(query.get("resourceVersion") or 0) < self.kube.gone_before:
                raise FakeApiException(410, "too old resource version")
            parts = resource_path.strip("/").split("/")
            idx = parts.index("namespaces")
            watch = _Watch(parts[idx + 2], parts[idx + 1], query, asyncio.get_running_loop(), asyncio.Queue())
            with self.kube.lock:
                # Replay what changed since the requested version, like a real watch cache.
                since = int(query["resourceVersion"])
                for (k, ns, _), obj in sorted(self.kube.objects.items()):
                    if (
                        k == watch.kind
                        and ns == watch.namespace
                        and _matches(obj, query)
                        and int(obj["metadata"]["resourceVersion"]) > since
                    ):
                        watch.queue.put_nowait(
                            (json.dumps({"type": "MODIFIED", "object": obj}) + "\n").encode()
                        )
                self.kube.watches.append(watch)
            return _AsyncResponse(watch=watch, kube=self.kube)
        answer, _ = self.kube.handle(resource_path, method, kwargs)
        data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
        pod = resource_path.rstrip("/").split("/")[-2]
        if resource_path.endswith("/log") and pod in self.kube.log_errors:
            status, message = self.kube.log_errors[pod]
            return _AsyncResponse(data=json.dumps({"message": message}).encode(), status=status)
        return _AsyncResponse(data=data)


# ---- a scripted kubelet + Job controller ---------------------------------------------------


def pod_for(job: JSON, index: int = 0) -> JSON:
    name = f"{job['metadata']['name']}-{index}"
    template = job["spec"]["template"]
    labels = {
        **template["metadata"].get("labels", {}),
        "batch.kubernetes.io/job-name": job["metadata"]["name"],
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": job["metadata"]["namespace"],
            "labels": labels,
            "creationTimestamp": now_iso(index),
            "ownerReferences": [
                {"kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
            ],
        },
        "spec": copy.deepcopy(template["spec"]),
        "status": {"phase": "Pending", "startTime": now_iso()},
    }


def container_state(state: JSON) -> list[JSON]:
    return [{"name": "kaniko", "state": state}]


def set_pod(
    kube: FakeKube, namespace: str, pod: str, *, phase: str, state: JSON, conditions: list[JSON] | None = None
) -> None:
    def mutate(obj: JSON) -> None:
        obj["status"]["phase"] = phase
        obj["status"]["containerStatuses"] = container_state(state)
        if conditions is not None:
            obj["status"]["conditions"] = conditions

    kube.update("pods", namespace, pod, mutate)


def set_job_condition(
    kube: FakeKube, namespace: str, job: str, kind: str, reason: str = "", message: str = "", **counts: int
) -> None:
    def mutate(obj: JSON) -> None:
        status = obj.setdefault("status", {})
        status.setdefault("conditions", []).append(
            {"type": kind, "status": "True", "reason": reason, "message": message}
        )
        status.update(counts)

    kube.update("jobs", namespace, job, mutate)
