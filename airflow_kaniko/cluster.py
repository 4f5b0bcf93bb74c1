"""The only module that talks to the Kubernetes API.

Requests are described once, as plain ``ApiRequest`` values built by pure functions; two thin
drivers send them: ``SyncCluster`` (kubernetes' ApiClient, from KubernetesHook) and
``AsyncCluster`` (kubernetes_asyncio's ApiClient, from AsyncKubernetesHook). Multi-step
operations are generators that yield requests and receive decoded answers, so the same
operation serves both drivers (the way httpx's auth flows serve both of its clients).

Watching follows kopf's rules: list first and keep the resourceVersion, watch from it with
bookmarks and a server-side timeout, resume from the last version seen, list again on
410 Gone, back off on 429 and on broken connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import aiohttp

from airflow_kaniko.build import owned_object_names
from airflow_kaniko.naming import LABEL_PREFIX

__all__ = [
    "ApiError",
    "AsyncCluster",
    "BuildSnapshot",
    "SyncCluster",
    "WatchState",
]

log = logging.getLogger(__name__)
T = TypeVar("T")
JSON = dict[str, Any]
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# A watch request is re-opened after this long; a build of any length costs one request per period.
WATCH_TIMEOUT_SECONDS = 1800


class ApiError(Exception):
    """A Kubernetes API call failed; ``status`` is the HTTP status (0 when no answer came)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Kubernetes API answered {status}: {message}" if status else message)
        self.status = status


@dataclass(frozen=True)
class ApiRequest:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    missing_ok: bool = False  # a 404 answers None instead of raising
    content_type: str = "application/json"


@dataclass(frozen=True)
class BuildSnapshot:
    job: JSON | None
    pods: list[JSON]


Operation = Generator[ApiRequest, Any, T]


# ---- pure request builders -------------------------------------------------------------------


def _collection(kind: str, namespace: str) -> str:
    group = "/apis/batch/v1" if kind == "jobs" else "/api/v1"
    return f"{group}/namespaces/{quote(namespace)}/{kind}"


def create(kind: str, manifest: Mapping[str, Any]) -> ApiRequest:
    return ApiRequest("POST", _collection(kind, manifest["metadata"]["namespace"]), body=dict(manifest))


def read(kind: str, namespace: str, name: str) -> ApiRequest:
    return ApiRequest("GET", f"{_collection(kind, namespace)}/{quote(name)}", missing_ok=True)


def delete(kind: str, namespace: str, name: str) -> ApiRequest:
    body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
    return ApiRequest("DELETE", f"{_collection(kind, namespace)}/{quote(name)}", body=body, missing_ok=True)


def list_(kind: str, namespace: str, **query: str) -> ApiRequest:
    return ApiRequest("GET", _collection(kind, namespace), query=query)


def unsuspend(namespace: str, name: str) -> ApiRequest:
    return ApiRequest(
        "PATCH",
        f"{_collection('jobs', namespace)}/{quote(name)}",
        body={"spec": {"suspend": False}},
        content_type="application/merge-patch+json",
    )


def pod_log(
    namespace: str, pod: str, container: str, *, tail_lines: int | None = None, follow: bool = False
) -> ApiRequest:
    query = {"container": container}
    if tail_lines is not None:
        query["tailLines"] = str(tail_lines)
    if follow:
        query["follow"] = "true"
    return ApiRequest(
        "GET", f"{_collection('pods', namespace)}/{quote(pod)}/log", query=query, missing_ok=True
    )


def job_pods_selector(job_name: str) -> str:
    return f"{JOB_NAME_LABEL}={job_name}"


# ---- operations: generators shared by both drivers --------------------------------------------


def read_snapshot_op(namespace: str, name: str) -> Operation[BuildSnapshot]:
    job = yield read("jobs", namespace, name)
    pods = yield list_("pods", namespace, labelSelector=job_pods_selector(name))
    return BuildSnapshot(job=job, pods=list(pods["items"]))


def find_jobs_op(namespace: str, build_key: str) -> Operation[list[BuildSnapshot]]:
    """Every Job of one task instance (all its tries), each with its pods."""
    jobs = yield list_("jobs", namespace, labelSelector=f"{LABEL_PREFIX}/build-key={build_key}")
    result = []
    for job in jobs["items"]:
        pods = yield list_("pods", namespace, labelSelector=job_pods_selector(job["metadata"]["name"]))
        result.append(BuildSnapshot(job=job, pods=list(pods["items"])))
    return result


OwnedFactory = Callable[[JSON], tuple[str, JSON]]


def create_build_op(job: Mapping[str, Any], owned: Sequence[OwnedFactory]) -> Operation[JSON]:
    """Create the Job suspended, then the objects it owns, then let it run.

    The owned Secret/ConfigMap need the Job's uid for their ownerReference (so the garbage
    collector removes them with the Job); suspending keeps pods from starting without them.
    If any step fails the Job is deleted, which takes whatever was created with it.
    """
    namespace, name = job["metadata"]["namespace"], job["metadata"]["name"]
    manifest = json.loads(json.dumps(job))
    manifest["spec"]["suspend"] = bool(owned)
    created: JSON = yield create("jobs", manifest)
    if not owned:
        return created
    try:
        for factory in owned:
            kind, obj = factory(created)
            yield create(kind, obj)
        created = yield unsuspend(namespace, name)
    except BaseException:
        yield delete("jobs", namespace, name)
        raise
    return created


def delete_build_op(
    namespace: str, name: str, owned: Sequence[tuple[str, str]] | None = None
) -> Operation[bool]:
    """Delete the Job (pods go with it) and the objects it owns. True if the Job existed.

    ``owned`` lists (kind, name) of what was created with the Job; None means every object a
    build may own (whoever deletes does not know how the Job was created, e.g. a trigger).
    """
    answer = yield delete("jobs", namespace, name)
    for kind, owned_name in owned_object_names(name) if owned is None else owned:
        yield delete(kind, namespace, owned_name)
    return answer is not None


# ---- the watch driver: no I/O --------------------------------------------------------------------


@dataclass
class WatchState:
    """The latest Job and pods seen, updated from list results and watch events."""

    job: JSON | None = None
    pods: dict[str, JSON] = field(default_factory=dict)

    def reset(self, kind: str, items: Sequence[JSON]) -> None:
        if kind == "job":
            self.job = items[0] if items else None
        else:
            self.pods = {p["metadata"]["name"]: p for p in items}

    def apply(self, kind: str, event_type: str, obj: JSON) -> bool:
        """Apply one watch event; True when the snapshot changed."""
        if event_type == "BOOKMARK":
            return False
        deleted = event_type == "DELETED"
        if kind == "job":
            self.job = None if deleted else obj
        elif deleted:
            self.pods.pop(obj["metadata"]["name"], None)
        else:
            self.pods[obj["metadata"]["name"]] = obj
        return True

    def snapshot(self) -> BuildSnapshot:
        return BuildSnapshot(job=self.job, pods=list(self.pods.values()))


def parse_watch_line(line: bytes) -> tuple[str, JSON]:
    event = json.loads(line)
    return str(event["type"]), dict(event["object"])


def backoff_delay(attempt: int, *, retry_after: float | None = None, cap: float = 10.0) -> float:
    if retry_after is not None:
        return min(retry_after, 60.0)
    return float(min(cap, 0.25 * 2**attempt) * (0.5 + random.random() / 2))


# ---- drivers ---------------------------------------------------------------------------------------


def _decode(data: bytes) -> Any:
    return json.loads(data) if data else None


def _api_error(exc: Exception) -> ApiError:
    status = int(getattr(exc, "status", 0) or 0)
    body = getattr(exc, "body", None)
    message = str(getattr(exc, "reason", "") or exc)
    if body:
        with contextlib.suppress(ValueError, AttributeError):
            message = json.loads(body).get("message", message)
    return ApiError(status, message)


def _status_error(status: int, body: bytes) -> ApiError:
    """An error answer that came back as a response (unpreloaded clients do not raise on it)."""
    message = body.decode("utf-8", "replace").strip()
    with contextlib.suppress(ValueError, AttributeError):
        message = json.loads(body).get("message", message)
    return ApiError(status, message or f"HTTP {status}")


def _call_kwargs(req: ApiRequest, *, timeout: float | None) -> dict[str, Any]:
    return {
        "query_params": list(req.query.items()),
        "header_params": {"Accept": "application/json", "Content-Type": req.content_type},
        "body": req.body,
        "auth_settings": ["BearerToken"],
        "_preload_content": False,
        "_return_http_data_only": True,
        "_request_timeout": timeout,
    }


class _ApiClient(Protocol):
    def call_api(self, resource_path: str, method: str, *args: Any, **kwargs: Any) -> Any: ...


class SyncCluster:
    """Runs operations with the synchronous kubernetes client (operator, sensor, CLI)."""

    def __init__(self, api_client: _ApiClient, *, request_timeout: float = 60.0) -> None:
        self._api = api_client
        self._timeout = request_timeout

    def send(self, req: ApiRequest) -> Any:
        try:
            response = self._api.call_api(req.path, req.method, **_call_kwargs(req, timeout=self._timeout))
        except Exception as exc:
            error = _api_error(exc)
            if req.missing_ok and error.status == 404:
                return None
            raise error from exc
        status = int(getattr(response, "status", 200))
        data = response.data
        if status >= 400:
            if req.missing_ok and status == 404:
                return None
            raise _status_error(status, data)
        if req.path.endswith("/log"):
            return data.decode("utf-8", "replace")
        return _decode(data)

    def run(self, op: Operation[T]) -> T:
        try:
            req = next(op)
            while True:
                try:
                    answer = self.send(req)
                except Exception as exc:
                    req = op.throw(exc)
                else:
                    req = op.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def read_snapshot(self, namespace: str, name: str) -> BuildSnapshot:
        return self.run(read_snapshot_op(namespace, name))

    def find_jobs(self, namespace: str, build_key: str) -> list[BuildSnapshot]:
        return self.run(find_jobs_op(namespace, build_key))

    def create_build(self, job: Mapping[str, Any], owned: Sequence[OwnedFactory] = ()) -> JSON:
        return self.run(create_build_op(job, owned))

    def delete_build(self, namespace: str, name: str, owned: Sequence[tuple[str, str]] | None = None) -> bool:
        return self.run(delete_build_op(namespace, name, owned))

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        return self.send(read(kind, namespace, name)) is not None

    def read_secret(self, namespace: str, name: str) -> JSON | None:
        return self.send(read("secrets", namespace, name))  # type: ignore[no-any-return]

    def read_log(self, namespace: str, pod: str, container: str, *, tail_lines: int | None = None) -> str:
        return self.send(pod_log(namespace, pod, container, tail_lines=tail_lines)) or ""


class AsyncCluster:
    """Runs the same operations with kubernetes_asyncio (trigger, and the operator's wait)."""

    def __init__(self, api_client: _ApiClient, *, request_timeout: float = 60.0) -> None:
        self._api = api_client
        self._timeout = request_timeout
        self.requests_sent = 0  # for benchmarks: API requests per build

    async def _open(self, req: ApiRequest, *, timeout: float | None) -> Any:
        self.requests_sent += 1
        try:
            response = await self._api.call_api(req.path, req.method, **_call_kwargs(req, timeout=timeout))
        except Exception as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            if getattr(exc, "status", None) is None and not hasattr(exc, "body"):
                raise ApiError(0, f"Kubernetes API unreachable: {exc!r}") from exc
            raise _api_error(exc) from exc
        status = int(getattr(response, "status", 200))
        if status >= 400:
            try:
                body = await response.read()
            finally:
                response.release()
            raise _status_error(status, body)
        return response

    async def send(self, req: ApiRequest) -> Any:
        try:
            response = await self._open(req, timeout=self._timeout)
        except ApiError as error:
            if req.missing_ok and error.status == 404:
                return None
            raise
        try:
            data = await response.read()
        finally:
            response.release()
        if req.path.endswith("/log"):
            return data.decode("utf-8", "replace")
        return _decode(data)

    async def run(self, op: Operation[T]) -> T:
        try:
            req = next(op)
            while True:
                try:
                    answer = await self.send(req)
                except Exception as exc:
                    req = op.throw(exc)
                else:
                    req = op.send(answer)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def read_snapshot(self, namespace: str, name: str) -> BuildSnapshot:
        return await self.run(read_snapshot_op(namespace, name))

    async def delete_build(self, namespace: str, name: str) -> bool:
        return await self.run(delete_build_op(namespace, name))

    async def read_log(
        self, namespace: str, pod: str, container: str, *, tail_lines: int | None = None
    ) -> str:
        return await self.send(pod_log(namespace, pod, container, tail_lines=tail_lines)) or ""

    async def follow_log(self, namespace: str, pod: str, container: str) -> AsyncIterator[str]:
        """Lines of the container's log as kaniko writes them, until the container exits."""
        response = await self._open(pod_log(namespace, pod, container, follow=True), timeout=None)
        try:
            async for raw in response.content:
                yield raw.decode("utf-8", "replace").rstrip("\n")
        finally:
            response.release()

    async def watch_kind(
        self, kind: str, namespace: str, query: Mapping[str, str], queue: asyncio.Queue[tuple[str, str, Any]]
    ) -> None:
        """List, then watch from the list's resourceVersion forever; feed (kind, type, obj) events."""
        resource = "jobs" if kind == "job" else "pods"
        version: str | None = None
        failures = 0
        while True:
            try:
                if version is None:
                    listed = await self.send(list_(resource, namespace, **query))
                    version = listed["metadata"]["resourceVersion"]
                    await queue.put((kind, "RESET", listed["items"]))
                watch_query = {
                    **query,
                    "watch": "true",
                    "resourceVersion": str(version),
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": str(WATCH_TIMEOUT_SECONDS),
                }
                response = await self._open(
                    ApiRequest("GET", _collection(resource, namespace), query=watch_query),
                    timeout=WATCH_TIMEOUT_SECONDS + 30,
                )
                try:
                    async for line in response.content:
                        if not line.strip():
                            continue
                        event_type, obj = parse_watch_line(line)
                        if event_type == "ERROR":
                            if obj.get("code") == 410:  # our version is too old: list again
                                version = None
                                break
                            raise ApiError(int(obj.get("code") or 0), str(obj.get("message")))
                        version = obj["metadata"]["resourceVersion"]
                        await queue.put((kind, event_type, obj))
                        failures = 0
                finally:
                    response.release()
            except asyncio.CancelledError:
                raise
            except ApiError as error:
                if error.status == 410:
                    version = None
                    continue
                if error.status and error.status not in {429, 500, 502, 503, 504}:
                    raise
                failures += 1
                delay = backoff_delay(failures)
                log.info("watch of %s %s interrupted (%s); resuming in %.1fs", kind, query, error, delay)
                await asyncio.sleep(delay)
            except (OSError, TimeoutError, ValueError, aiohttp.ClientError) as error:
                # A restarting apiserver cuts the stream mid-chunk (aiohttp.ClientPayloadError).
                failures += 1
                delay = backoff_delay(failures)
                log.info("watch of %s %s broke (%r); resuming in %.1fs", kind, query, error, delay)
                await asyncio.sleep(delay)

    async def watch_build(
        self, namespace: str, name: str, *, tick_seconds: float = 5.0
    ) -> AsyncGenerator[BuildSnapshot, None]:
        """Yield a snapshot whenever the Job or one of its pods changes, and every ``tick_seconds``.

        The ticks cost no requests; they let time-based decisions (a pod unschedulable for too
        long) be made without an event.
        """
        queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
        state = WatchState()
        seen: set[str] = set()
        tasks = [
            asyncio.create_task(
                self.watch_kind("job", namespace, {"fieldSelector": f"metadata.name={name}"}, queue)
            ),
            asyncio.create_task(
                self.watch_kind("pod", namespace, {"labelSelector": job_pods_selector(name)}, queue)
            ),
        ]
        try:
            while True:
                getter = asyncio.ensure_future(queue.get())
                done, _ = await asyncio.wait(
                    [getter, *tasks], timeout=tick_seconds, return_when=asyncio.FIRST_COMPLETED
                )
                for task in tasks:
                    if task in done:
                        getter.cancel()
                        task.result()  # a watch that gave up: raise its error
                if getter not in done:
                    getter.cancel()
                    if len(seen) == 2:
                        yield state.snapshot()
                    continue
                changed = False
                item: tuple[str, str, Any] | None = getter.result()
                while item is not None:
                    kind, event_type, obj = item
                    if event_type == "RESET":
                        seen.add(kind)
                        state.reset(kind, obj)
                        changed = True
                    else:
                        changed = state.apply(kind, event_type, obj) or changed
                    item = queue.get_nowait() if not queue.empty() else None
                if changed and len(seen) == 2:
                    yield state.snapshot()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
