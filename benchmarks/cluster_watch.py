"""Watch versus poll on a real control plane: completion latency, API requests, many triggers.

Starts ONE control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok;
``tests/support/control_plane.py``) and measures side by side, in the same run:

1. Latency from a Job turning Complete to the waiter noticing it:
   - ``airflow-kaniko deferred``: ``KanikoJobTrigger.run()`` (``wait_for_build`` on a watch);
   - ``airflow-kaniko worker``: the operator's non-deferred wait (``asyncio.run(op._wait())``,
     the same ``wait_for_build``);
   - ``cncf deferred``: ``KubernetesJobTrigger.run()`` (polls ``read_namespaced_job_status``
     every ``poll_interval`` = 10 s, a new ApiClient per poll);
   - ``cncf worker``: ``KubernetesHook.wait_until_job_complete`` (the non-deferred
     ``KubernetesJobOperator``, ``job_poll_interval`` = 10 s).
   The reference is the kube-apiserver audit log: this script's audit policy records the
   objects of jobs/status writes, so the moment (microseconds, same clock) the Job controller
   wrote the Complete condition, and the SuccessCriteriaMet condition it writes just before,
   is known. Cross-checks: a separate watch of all Jobs in this process (wall clock), and the
   Complete condition's lastTransitionTime (whole seconds, truncated).
2. API requests per build for builds of 10 s, 60 s and 300 s (kwok delay), counted in the client
   at the REST layer (``kubernetes`` and ``kubernetes_asyncio`` ``RESTClientObject.request``,
   every request including watch opens), split into submit (the operator's ``execute`` up to
   deferral), wait and finish (``execute_complete`` / the worker's finish); cross-checked with
   the kube-apiserver audit log per namespace. All durations run concurrently (bounded runtime).
   Each build's kwok delay gets a random 0-10 s added so a 10 s poller meets completion at a
   random phase (a fixed delay would always hit the same point of the poll period).
3. Many deferred builds in one process (like one triggerer): N Jobs (default 200) that finish
   about 60 s after they start; N ``KanikoJobTrigger.run()`` in one asyncio loop in a child
   process, each started as soon as its operator deferred, then the same with N cncf
   ``KubernetesJobTrigger.run()`` in another child. The parent samples the
   child's open TCP connections to the apiserver (its socket inodes matched against
   /proc/<pid>/net/tcp) and RSS from /proc; the child measures event-loop lag (a ticker's sleep
   overshoot) and counts requests.

Run (on demand, never under pytest; about 10 minutes; builds the control plane if not cached):
    .venv/bin/python benchmarks/cluster_watch.py
    .venv/bin/python benchmarks/cluster_watch.py --durations 10 60 --reps 3 --many 50   # quicker
Prints a table and writes benchmarks/results/cluster_watch.json. A measurement: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import contextvars
import importlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results" / "cluster_watch.json"
DIGEST = "sha256:" + "be" * 32
IMAGE = "ghcr.io/osscontainertools/kaniko:v1.28.2"
WATCHER_AGENT = "airflow-kaniko-benchmark-watcher"
MARK = "@@benchmark "  # prefixes the child's JSON lines (its stdout also carries log lines)
VARIANTS = ("ours-deferred", "ours-worker", "cncf-deferred", "cncf-worker")
LABELS = {
    "ours-deferred": "airflow-kaniko KanikoJobTrigger (deferred)",
    "ours-worker": "airflow-kaniko operator wait (worker)",
    "cncf-deferred": "cncf KubernetesJobTrigger (deferred, 10 s poll)",
    "cncf-worker": "cncf wait_until_job_complete (worker, 10 s poll)",
}

# ---- request counting at the REST layer --------------------------------------------------------

#: Which build (and which step of it) the current thread/task works for.
CURRENT: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("current", default=None)
REQUESTS: Counter[tuple[str, str]] = Counter()
REQUESTS_BY_PATH: dict[str, Counter[str]] = defaultdict(Counter)
_LOCK = threading.Lock()


def _record(method: str, url: str) -> None:
    key = CURRENT.get()
    if key is None:
        return
    with _LOCK:
        REQUESTS[key] += 1
        path = url.split("?", 1)[0].split("/namespaces/", 1)[-1]
        kind = "/".join(p for i, p in enumerate(path.split("/")) if i in (1, 3))
        watch = " watch" if "watch=true" in url else ""
        REQUESTS_BY_PATH[key[0]][f"{method} {kind}{watch}"] += 1


def install_request_counter() -> None:
    """Count every request either kubernetes client sends, attributed to ``CURRENT``."""
    import kubernetes.client.rest as sync_rest
    import kubernetes_asyncio.client.rest as async_rest

    sync_request = sync_rest.RESTClientObject.request
    async_request = async_rest.RESTClientObject.request

    def counted_sync(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        _record(method, url + ("?" + "&".join(f"{k}={v}" for k, v in kwargs.get("query_params") or [])))
        return sync_request(self, method, url, *args, **kwargs)

    async def counted_async(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        _record(method, url + ("?" + "&".join(f"{k}={v}" for k, v in kwargs.get("query_params") or [])))
        return await async_request(self, method, url, *args, **kwargs)

    sync_rest.RESTClientObject.request = counted_sync  # type: ignore[method-assign]
    async_rest.RESTClientObject.request = counted_async  # type: ignore[method-assign]


def import_everything() -> None:
    # Before any thread starts: concurrent first imports of Airflow modules can deadlock.
    for module in (
        "kubernetes",
        "kubernetes_asyncio",
        "airflow.sdk.exceptions",
        "airflow.providers.cncf.kubernetes.operators.job",
        "airflow.providers.cncf.kubernetes.triggers.job",
        "airflow.providers.cncf.kubernetes.hooks.kubernetes",
        "airflow_kaniko.operators.build",
        "airflow_kaniko.triggers",
    ):
        importlib.import_module(module)


# ---- builds ------------------------------------------------------------------------------------


def fake_ti(task_id: str, run_id: str, map_index: int) -> Any:
    return SimpleNamespace(
        dag_id="benchmark",
        task_id=task_id,
        run_id=run_id,
        map_index=map_index,
        try_number=1,
        xcom_push=lambda **_: None,
    )


#: map_index the benchmark's fake task instances use; see ``probe_map_index``.
MAP_INDEX = {"value": -1}


def ours_operator(namespace: str, task_id: str, delay: float) -> Any:
    from airflow_kaniko.operators.build import KanikoBuildOperator
    from tests.support.control_plane import Kwok

    controls = Kwok.succeed(message=DIGEST, delay=f"{delay:.1f}s")
    return KanikoBuildOperator(
        task_id=task_id,
        context="git://git.example.com/team/app.git#refs/heads/main",
        destinations=["registry.example.com/team/app:1"],
        namespace=namespace,
        pod_labels=controls.labels,
        pod_annotations=controls.annotations,
        stream_logs=False,
        deferrable=True,
    )


def cncf_operator(namespace: str, task_id: str, delay: float) -> Any:
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

    from tests.support.control_plane import Kwok

    controls = Kwok.succeed(message=DIGEST, delay=f"{delay:.1f}s")
    return KubernetesJobOperator(
        task_id=task_id,
        name="cncf-build",
        namespace=namespace,
        image=IMAGE,
        cmds=["/kaniko/executor"],
        labels=controls.labels,
        annotations=controls.annotations,
        wait_until_job_complete=True,
        deferrable=True,
        parallelism=1,
        backoff_limit=0,
        get_logs=False,
        do_xcom_push=False,
    )


class Submitted(SimpleNamespace):
    op: Any
    trigger: Any
    job_name: str
    context: dict[str, Any]
    notes: list[str]


def submit(impl: str, namespace: str, task_id: str, delay: float) -> Submitted:
    """Run the operator's execute() until it defers: the Job exists, the trigger is returned."""
    from airflow.sdk.exceptions import TaskDeferred

    ti = fake_ti(task_id, namespace, MAP_INDEX["value"])
    context = {"ti": ti, "task_instance": ti, "run_id": namespace, "dag": SimpleNamespace(dag_id="benchmark")}
    notes: list[str] = []
    op = (ours_operator if impl == "ours" else cncf_operator)(namespace, task_id, delay)
    try:
        op.execute(context)
    except TaskDeferred as deferred:
        trigger = deferred.trigger
    except Exception as exc:
        if impl == "ours" or getattr(op, "job", None) is None:
            raise
        # cncf: the Job exists but get_pods() found no pod in its 4 immediate list calls.
        notes.append(f"cncf execute failed after creating the Job: {exc}")
        # The benchmark's own retries are not the operator's requests: count them apart.
        current = CURRENT.get()
        token = CURRENT.set((current[0], "benchmark-retry") if current else None)
        try:
            deadline = time.monotonic() + 60
            while True:
                time.sleep(0.5)
                try:
                    op.pods = op.get_pods(pod_request_obj=op.pod_request_obj, context=context)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
        finally:
            CURRENT.reset(token)
        try:
            op.execute_deferrable()
        except TaskDeferred as deferred:
            trigger = deferred.trigger
        else:
            raise RuntimeError("cncf operator did not defer") from exc
    else:
        raise RuntimeError(f"{impl} operator did not defer")
    return Submitted(op=op, trigger=trigger, job_name=str(trigger.job_name), context=context, notes=notes)


async def first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise RuntimeError("trigger ended without an event")


def ours_worker_wait(op: Any, job_name: str) -> Any:
    """What KanikoBuildOperator.execute does when not deferrable: asyncio.run(self._wait(name))."""
    op._job_name = job_name
    return asyncio.run(op._wait(job_name))


def cncf_worker_wait(op: Any, job_name: str, namespace: str) -> Any:
    """What KubernetesJobOperator.execute does when not deferrable (job_poll_interval = 10 s)."""
    return op.hook.wait_until_job_complete(
        job_name=job_name, namespace=namespace, job_poll_interval=op.job_poll_interval
    )


def finish(variant: str, sub: Submitted, outcome: Any) -> None:
    if variant == "ours-deferred":
        sub.op.execute_complete(sub.context, outcome)
    elif variant == "ours-worker":
        sub.op._finish(sub.op.hook.sync_cluster(), outcome)
    elif variant == "cncf-deferred":
        sub.op.execute_complete(sub.context, outcome)
    else:  # cncf-worker: the rest of execute() after wait_until_job_complete
        sub.context["ti"].xcom_push(key="job", value=outcome.to_dict())
        if error := sub.op.hook.is_job_failed(job=outcome):
            raise RuntimeError(error)


# ---- completion reference: a separate watch of every Job --------------------------------------


class CompletionWatcher:
    """Wall-clock time each Job is first seen Complete, and its condition's lastTransitionTime."""

    def __init__(self, cp: Any) -> None:
        from kubernetes import client, watch

        self.seen: dict[tuple[str, str], tuple[float, float]] = {}
        self._api = cp.api_client()
        self._api.user_agent = WATCHER_AGENT
        self._batch = client.BatchV1Api(self._api)
        self._watch = watch.Watch()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _note(self, job: Any) -> None:
        now = time.time()
        for c in job.status.conditions or []:
            if c.type == "Complete" and c.status == "True":
                key = (job.metadata.namespace, job.metadata.name)
                self.seen.setdefault(key, (now, c.last_transition_time.timestamp()))

    def _run(self) -> None:
        while not getattr(self._watch, "_stop", False):
            try:
                listed = self._batch.list_job_for_all_namespaces()
                for job in listed.items:
                    self._note(job)
                self._ready.set()
                for event in self._watch.stream(
                    self._batch.list_job_for_all_namespaces,
                    resource_version=listed.metadata.resource_version,
                    timeout_seconds=3600,
                ):
                    self._note(event["object"])
            except Exception:
                time.sleep(0.2)

    def wait(self, namespace: str, name: str, timeout: float = 60) -> tuple[float, float] | None:
        deadline = time.monotonic() + timeout
        while (namespace, name) not in self.seen and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.seen.get((namespace, name))

    def close(self) -> None:
        self._watch.stop()
        with contextlib.suppress(Exception):
            self._api.close()


# ---- phase 1 + 2: single builds ----------------------------------------------------------------


def new_namespace(cp: Any, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:5]}"
    cp.create_namespace(name)
    return name


async def one_build(
    variant: str, namespace: str, index: int, duration: int, delay: float, watcher: CompletionWatcher
) -> dict[str, Any]:
    impl = variant.split("-")[0]
    key = f"{variant}/{duration}/{index}"
    row: dict[str, Any] = {"variant": variant, "duration_s": duration, "kwok_delay_s": round(delay, 1)}
    CURRENT.set((key, "submit"))
    t_submit = time.time()
    sub = await asyncio.to_thread(submit, impl, namespace, f"{variant}-{duration}-{index}", delay)
    row["job"] = sub.job_name
    row["notes"] = sub.notes
    CURRENT.set((key, "wait"))
    if variant.endswith("deferred"):
        outcome: Any = await first_event(sub.trigger)
    elif impl == "ours":
        outcome = await asyncio.to_thread(ours_worker_wait, sub.op, sub.job_name)
    else:
        outcome = await asyncio.to_thread(cncf_worker_wait, sub.op, sub.job_name, namespace)
    noticed = time.time()
    CURRENT.set((key, "finish"))
    try:
        await asyncio.to_thread(finish, variant, sub, outcome)
    except Exception as exc:
        row["finish_error"] = repr(exc)
    seen = await asyncio.to_thread(watcher.wait, namespace, sub.job_name)
    if seen is None:
        row["error"] = "the reference watch never saw the Job Complete"
    else:
        row["noticed"], row["seen_by_watch"] = noticed, seen[0]
        row["latency_vs_watch_s"] = round(noticed - seen[0], 3)
        row["latency_vs_condition_s"] = round(noticed - seen[1], 3)
        row["build_wall_s"] = round(noticed - t_submit, 1)
    row["requests"] = {step: REQUESTS[(key, step)] for step in ("submit", "wait", "finish")}
    row["requests"]["total"] = sum(row["requests"].values())
    return row


def _audit_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def job_status_writes(cp: Any) -> dict[tuple[str, str], dict[str, float]]:
    """When the Job controller first wrote SuccessCriteriaMet and Complete into each Job's status.

    From the audit log (stageTimestamp, microseconds); the policy of ``audited_control_plane``
    records the objects of jobs/status writes, so the write that set the condition is known.
    """
    writes: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for event in cp.api_requests(clients_only=False):
        ref = event.get("objectRef") or {}
        if ref.get("resource") != "jobs" or ref.get("subresource") != "status":
            continue
        if not str((event.get("responseStatus") or {}).get("code", 200)).startswith("2"):
            continue
        obj = event.get("responseObject") or {}
        at = _audit_time(event["stageTimestamp"])
        key = (ref.get("namespace", ""), ref.get("name", ""))
        for c in (obj.get("status") or {}).get("conditions") or ():
            if c.get("status") == "True" and c.get("type") in ("SuccessCriteriaMet", "Complete"):
                first = writes[key].get(c["type"])
                writes[key][c["type"]] = at if first is None else min(first, at)
    return writes


def audited_control_plane(bin_dir: Path) -> Any:
    """The test ControlPlane, with jobs/status writes audited with their objects."""
    import yaml

    from tests.support.control_plane import ControlPlane

    class Audited(ControlPlane):
        def _audit_flags(self) -> list[str]:
            flags = super()._audit_flags()
            (self.workdir / "audit-policy.yaml").write_text(
                yaml.safe_dump(
                    {
                        "apiVersion": "audit.k8s.io/v1",
                        "kind": "Policy",
                        "omitStages": ["RequestReceived", "ResponseStarted"],
                        "rules": [
                            {
                                "level": "RequestResponse",
                                "verbs": ["update", "patch"],
                                "resources": [{"group": "batch", "resources": ["jobs/status"]}],
                            },
                            {"level": "Metadata"},
                        ],
                    }
                )
            )
            return flags

    return Audited(bin_dir, nodes=2, audit=True)


def latencies_from_writes(
    writes: dict[tuple[str, str], dict[str, float]], key: tuple[str, str], noticed: float
) -> dict[str, float]:
    """noticed minus the Complete write, and minus the first terminal write (SuccessCriteriaMet)."""
    out = {}
    conditions = writes.get(key, {})
    if "Complete" in conditions:
        out["latency_vs_complete_s"] = round(noticed - conditions["Complete"], 3)
    if conditions:
        out["latency_vs_first_terminal_s"] = round(noticed - min(conditions.values()), 3)
    return out


def single_builds(cp: Any, durations: list[int], reps: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    watcher = CompletionWatcher(cp)
    namespaces = {(v, d): new_namespace(cp, f"{v}-{d}s") for v in VARIANTS for d in durations}
    plan = [(v, d, i, d + rng.uniform(0, 10)) for d in durations for i in range(reps) for v in VARIANTS]

    async def run_all() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=len(plan) + 8))
        tasks = []
        for variant, duration, index, delay in plan:
            ns = namespaces[(variant, duration)]
            tasks.append(asyncio.create_task(one_build(variant, ns, index, duration, delay, watcher)))
            await asyncio.sleep(0.05)  # a little spread, like tasks scheduled one after another
        return await asyncio.gather(*tasks, return_exceptions=True)

    t0 = time.monotonic()
    results = asyncio.run(run_all())
    elapsed = time.monotonic() - t0
    watcher.close()
    time.sleep(2.0)  # the audit log is written when a request (or watch) ends
    writes = job_status_writes(cp)
    rows: list[dict[str, Any]] = []
    for (variant, duration, _index, _delay), result in zip(plan, results, strict=True):
        if isinstance(result, BaseException):
            rows.append({"variant": variant, "duration_s": duration, "error": repr(result)})
            continue
        if "noticed" in result:
            ns = namespaces[(variant, duration)]
            result.update(latencies_from_writes(writes, (ns, result["job"]), result["noticed"]))
        rows.append(result)
    audit: dict[str, Any] = {}
    for (variant, duration), ns in namespaces.items():
        events = [e for e in cp.api_requests(namespace=ns) if e.get("userAgent", "") != WATCHER_AGENT]
        audit[f"{variant}/{duration}"] = round(len(events) / reps, 1)
    return {
        "rows": rows,
        "audit_requests_per_build": audit,
        "paths": {k: dict(v) for k, v in sorted(REQUESTS_BY_PATH.items())},
        "elapsed_s": round(elapsed, 1),
    }


def pooled_latency(single: dict[str, Any]) -> dict[str, Any]:
    """Per waiter, over every build length: the latency does not depend on it."""
    pooled = {}
    for variant in VARIANTS:
        lat = sorted(
            r.get("latency_vs_complete_s", r["latency_vs_watch_s"])
            for r in single["rows"]
            if r["variant"] == variant and "latency_vs_watch_s" in r
        )
        first = sorted(
            r["latency_vs_first_terminal_s"]
            for r in single["rows"]
            if r["variant"] == variant and "latency_vs_first_terminal_s" in r
        )
        if lat:
            pooled[variant] = {
                "builds": len(lat),
                "median_s": round(statistics.median(lat), 3),
                "min_s": round(lat[0], 3),
                "max_s": round(lat[-1], 3),
                "vs_first_terminal_median_s": round(statistics.median(first), 3) if first else None,
                "vs_first_terminal_max_s": round(first[-1], 3) if first else None,
            }
    return pooled


def summarize_single(single: dict[str, Any], durations: list[int]) -> list[dict[str, Any]]:
    summary = []
    for variant in VARIANTS:
        for duration in durations:
            rows = [
                r
                for r in single["rows"]
                if r["variant"] == variant and r["duration_s"] == duration and "latency_vs_watch_s" in r
            ]
            errors = [
                r.get("error")
                for r in single["rows"]
                if r["variant"] == variant and r["duration_s"] == duration
            ]
            entry: dict[str, Any] = {"variant": variant, "duration_s": duration, "builds": len(rows)}
            if rows:
                lat = [r.get("latency_vs_complete_s", r["latency_vs_watch_s"]) for r in rows]
                watch = [r["latency_vs_watch_s"] for r in rows]
                cond = [r["latency_vs_condition_s"] for r in rows]
                first = [r["latency_vs_first_terminal_s"] for r in rows if "latency_vs_first_terminal_s" in r]
                entry.update(
                    latency_median_s=round(statistics.median(lat), 3),
                    latency_max_s=round(max(lat), 3),
                    latency_vs_first_terminal_median_s=round(statistics.median(first), 3) if first else None,
                    latency_vs_watch_median_s=round(statistics.median(watch), 3),
                    latency_vs_condition_median_s=round(statistics.median(cond), 3),
                    requests_median={
                        step: statistics.median(r["requests"][step] for r in rows)
                        for step in ("submit", "wait", "finish", "total")
                    },
                )
            entry["audit_requests_per_build"] = single["audit_requests_per_build"].get(
                f"{variant}/{duration}"
            )
            entry["errors"] = [e for e in errors if e]
            summary.append(entry)
    return summary


# ---- phase 3: many deferred builds in one process ----------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def apiserver_connections(pid: int, port: int) -> int:
    """TCP connections of process ``pid`` whose remote port is the apiserver's (any state)."""
    inodes = _socket_inodes(pid)
    count = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
    return count


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def many_child() -> int:
    """Child process: run triggers concurrently in one loop, like a triggerer.

    Each stdin line is one serialized trigger, started as soon as it arrives (the way a
    triggerer picks up tasks as they defer); end of input: no more.
    """
    import_everything()
    install_request_counter()
    print(MARK + json.dumps({"ready": time.time()}), flush=True)

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str] = asyncio.Queue()

        def reader() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(lines.put_nowait, line)
            loop.call_soon_threadsafe(lines.put_nowait, "")

        threading.Thread(target=reader, daemon=True).start()
        lags: list[tuple[float, float]] = []
        stop = asyncio.Event()
        period = 0.1

        async def ticker() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                await asyncio.sleep(period)
                lags.append((time.time(), time.perf_counter() - t - period))

        noticed: dict[str, float] = {}
        failures: list[str] = []

        async def one(trigger: Any) -> None:
            CURRENT.set(("many", "wait"))
            try:
                async for event in trigger.run():
                    noticed[trigger.job_name] = time.time()
                    payload = dict(event.payload)
                    status = payload.get("phase") or payload.get("status")
                    if status not in ("succeeded", "success"):
                        failures.append(f"{trigger.job_name}: {status} {payload.get('message')}")
                    return
            except Exception as exc:
                failures.append(f"{trigger.job_name}: {exc!r}")

        tick = asyncio.create_task(ticker())
        started = time.time()
        tasks = []
        while line := await lines.get():
            classpath, kwargs = json.loads(line)
            module, _, name = classpath.rpartition(".")
            trigger = getattr(importlib.import_module(module), name)(**kwargs)
            tasks.append(asyncio.create_task(one(trigger)))
        all_started = time.time()
        await asyncio.gather(*tasks)
        stop.set()
        await tick
        every = sorted(lag for _, lag in lags)
        steady = [lag for t, lag in lags if t > all_started + 5]
        return {
            "started": started,
            "all_started": all_started,
            "noticed": noticed,
            "failures": failures[:10],
            "failure_count": len(failures),
            "lag_samples": len(every),
            "lag_p50_ms": round(every[len(every) // 2] * 1000, 1),
            "lag_p99_ms": round(every[max(0, int(len(every) * 0.99) - 1)] * 1000, 1),
            "lag_max_ms": round(every[-1] * 1000, 1),
            "lag_max_steady_ms": round(max(steady, default=0.0) * 1000, 1),
            "requests": REQUESTS[("many", "wait")],
        }

    print(MARK + json.dumps({"result": asyncio.run(main())}), flush=True)
    return 0


def many_deferred(cp: Any, impl: str, count: int, seconds: int, watcher: CompletionWatcher) -> dict[str, Any]:
    namespace = new_namespace(cp, f"many-{impl}")
    port = int(cp.server.rsplit(":", 1)[1])
    child = subprocess.Popen(
        [sys.executable, __file__, "_many_child"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    assert child.stdin is not None and child.stdout is not None
    for line in child.stdout:  # until ready: imports done
        if line.startswith(MARK):
            break
    base_rss = rss_mib(child.pid)
    base_conn = apiserver_connections(child.pid, port)
    samples: list[tuple[float, int, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.time(), apiserver_connections(child.pid, port), rss_mib(child.pid)))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result: dict[str, Any] = {}

    def read_result() -> None:  # the child's log lines are dropped
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith(MARK):
                result.update(json.loads(line[len(MARK) :])["result"])

    result_reader = threading.Thread(target=read_result, daemon=True)
    result_reader.start()
    t0 = time.monotonic()
    notes = 0
    CURRENT.set((f"many-{impl}", "submit"))
    for i in range(count):
        sub = submit(impl, namespace, f"m{i}", float(seconds))
        notes += len(sub.notes)
        child.stdin.write(json.dumps(sub.trigger.serialize()) + "\n")
        child.stdin.flush()
    submit_s = time.monotonic() - t0
    child.stdin.close()
    child.wait()
    result_reader.join()
    done.set()
    sampler.join()
    time.sleep(2.0)  # the audit log is written when a request (or watch) ends
    writes = job_status_writes(cp)
    latencies, vs_terminal, vs_watch = [], [], []
    for name, noticed in result.get("noticed", {}).items():
        found = latencies_from_writes(writes, (namespace, name), noticed)
        if "latency_vs_complete_s" in found:
            latencies.append(found["latency_vs_complete_s"])
        if "latency_vs_first_terminal_s" in found:
            vs_terminal.append(found["latency_vs_first_terminal_s"])
        seen = watcher.wait(namespace, name, timeout=5)
        if seen is not None:
            vs_watch.append(noticed - seen[0])
    latencies.sort()
    vs_terminal.sort()
    conns = [c for _, c, _ in samples]
    # While every trigger is waiting: from 5 s after the last one started to the first event.
    first_event = min(result.get("noticed", {}).values(), default=0.0)
    running = [c for t, c, _ in samples if result.get("all_started", 0.0) + 5 < t < first_event]
    peak_rss = max((r for _, _, r in samples), default=0.0)
    audit = [e for e in cp.api_requests(namespace=namespace) if e.get("userAgent", "") != WATCHER_AGENT]
    by_agent = Counter(str(e.get("userAgent", "")).split(" ")[0] for e in audit)
    return {
        "impl": impl,
        "builds": count,
        "build_seconds": seconds,
        "events": len(result.get("noticed", {})),
        "failures": result.get("failure_count"),
        "failure_examples": result.get("failures"),
        "submit_all_s": round(submit_s, 1),
        "submit_get_pods_failures": notes,
        "wall_s": round(max(result.get("noticed", {}).values(), default=0.0) - result.get("started", 0.0), 1),
        "latency_median_s": round(statistics.median(latencies), 3) if latencies else None,
        "latency_p95_s": round(latencies[int(len(latencies) * 0.95) - 1], 3) if latencies else None,
        "latency_max_s": round(latencies[-1], 3) if latencies else None,
        "latency_vs_first_terminal_median_s": round(statistics.median(vs_terminal), 3)
        if vs_terminal
        else None,
        "latency_vs_first_terminal_max_s": round(vs_terminal[-1], 3) if vs_terminal else None,
        "latency_vs_watch_median_s": round(statistics.median(vs_watch), 3) if vs_watch else None,
        "connections_baseline": base_conn,
        "connections_peak": max(conns, default=0),
        "connections_median_while_waiting": statistics.median(running) if running else None,
        "rss_baseline_mib": round(base_rss, 1),
        "rss_peak_mib": round(peak_rss, 1),
        "rss_growth_per_build_kib": round((peak_rss - base_rss) * 1024 / count, 1),
        "loop_lag_p50_ms": result.get("lag_p50_ms"),
        "loop_lag_p99_ms": result.get("lag_p99_ms"),
        "loop_lag_max_ms": result.get("lag_max_ms"),
        "loop_lag_max_steady_ms": result.get("lag_max_steady_ms"),
        "wait_requests_per_build_client": round(result.get("requests", 0) / count, 1),
        "requests_per_build_audit": round(len(audit) / count, 1),
        "audit_by_agent": dict(by_agent),
    }


# ---- report ---------------------------------------------------------------------------------------


def probe_map_index(cp: Any) -> str | None:
    """Can an unmapped task (map_index -1) create its Job? If not, use 0 and say so."""
    namespace = new_namespace(cp, "probe")
    try:
        submit("ours", namespace, "probe", 0.0)
        return None
    except Exception as exc:
        MAP_INDEX["value"] = 0
        return f"KanikoBuildOperator with map_index=-1 failed ({str(exc)[:300]}); benchmark uses map_index=0"


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def print_table(report: dict[str, Any]) -> None:
    print("\n1+2. Single builds (median of", report["args"]["reps"], "builds per cell)")
    header = (
        "waiter",
        "build",
        "noticed after Complete (s)",
        "vs first terminal condition (s)",
        "requests submit/wait/finish = total",
        "audit/build",
    )
    print(" | ".join(header))
    for e in report["single_summary"]:
        req = e.get("requests_median") or {}
        print(
            " | ".join(
                (
                    LABELS[e["variant"]],
                    f"{e['duration_s']} s",
                    f"{fmt(e.get('latency_median_s'))} (max {fmt(e.get('latency_max_s'))})",
                    fmt(e.get("latency_vs_first_terminal_median_s")),
                    f"{fmt(req.get('submit'))}/{fmt(req.get('wait'))}/{fmt(req.get('finish'))} = {fmt(req.get('total'))}",
                    fmt(e.get("audit_requests_per_build")),
                )
            )
            + (f"  ERRORS: {e['errors']}" if e["errors"] else "")
        )
    print("\nlatency over all build lengths (s):")
    for variant, p in report.get("latency_pooled", {}).items():
        print(
            f"   {LABELS[variant]}: median {fmt(p['median_s'])}, min {fmt(p['min_s'])}, "
            f"max {fmt(p['max_s'])}; vs first terminal condition median "
            f"{fmt(p['vs_first_terminal_median_s'])}, max {fmt(p['vs_first_terminal_max_s'])} "
            f"({p['builds']} builds)"
        )
    for m in report.get("many", []):
        print(f"\n3. {m['builds']} concurrent deferred builds in one process: {m['impl']}")
        for k, v in m.items():
            if k not in ("impl",):
                print(f"   {k}: {fmt(v)}")


def main() -> int:
    if sys.argv[1:] == ["_many_child"]:
        return many_child()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--durations", type=int, nargs="*", default=[10, 60, 300], help="build seconds (kwok)"
    )
    parser.add_argument("--reps", type=int, default=3, help="builds per waiter and duration")
    parser.add_argument("--many", type=int, default=200, help="concurrent deferred builds (0: skip)")
    parser.add_argument("--many-seconds", type=int, default=60, help="length of those builds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args()

    from tests.support.control_plane import build_control_plane

    import_everything()
    install_request_counter()
    # A SIGTERM unwinds like Ctrl-C, so the control plane is stopped, not orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    t0 = time.monotonic()
    cp = audited_control_plane(build_control_plane())
    cp.start()
    print(f"control plane up in {time.monotonic() - t0:.1f}s ({cp.server})", flush=True)
    report: dict[str, Any] = {
        "when": datetime.now().isoformat(timespec="seconds"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "binaries": str(cp.bin_dir.name),
            "load_average_at_start": os.getloadavg(),
        },
        "findings": [],
    }
    try:
        os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = cp.airflow_connection()
        if (finding := probe_map_index(cp)) is not None:
            report["findings"].append(finding)
            print(finding, flush=True)
        print(
            f"single builds: {args.durations} s x {args.reps} x {len(VARIANTS)} waiters, concurrently",
            flush=True,
        )
        single = single_builds(cp, args.durations, args.reps, args.seed)
        report["single"] = single
        report["single_summary"] = summarize_single(single, args.durations)
        report["latency_pooled"] = pooled_latency(single)
        print(f"single builds done in {single['elapsed_s']} s", flush=True)
        report["many"] = []
        if args.many:
            watcher = CompletionWatcher(cp)
            for impl in ("ours", "cncf"):
                print(f"{args.many} deferred builds in one process: {impl}", flush=True)
                report["many"].append(many_deferred(cp, impl, args.many, args.many_seconds, watcher))
                print(json.dumps(report["many"][-1]), flush=True)
            watcher.close()
        report["machine"]["load_average_at_end"] = os.getloadavg()
    finally:
        cp.stop()
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print_table(report)
    print(f"\nwritten {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
