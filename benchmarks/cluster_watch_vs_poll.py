"""Watch versus poll, on the real control plane: how fast a finished build is noticed and what a
build costs in API requests; then many deferred builds in one triggerer process.

Compares, on the same cluster in the same run:
  - airflow-kaniko KanikoBuildOperator, in the worker and deferred (KanikoJobTrigger);
  - the cncf.kubernetes provider's KubernetesJobOperator (wait_until_job_complete=True), in the
    worker and deferred (KubernetesJobTrigger), default job_poll_interval (10 s).

Latency: from the moment a separate watcher sees the Job's Complete condition to the moment the
task notices (the worker's execute returns; the trigger yields its event). API requests: the
kube-apiserver audit log, per build namespace, without the control plane's own components and
without this script's watcher. kwok plays each build for a chosen duration.

Run (builds and starts the control plane itself; minutes):
    .venv/bin/python benchmarks/cluster_watch_vs_poll.py --durations 10 60 --concurrent 200
A measurement, not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.control_plane import ControlPlane, Kwok, build_control_plane  # noqa: E402

WATCHER_AGENT = "airflow-kaniko-benchmark"
DIGEST = "sha256:" + "be" * 32
IMAGE = "ghcr.io/osscontainertools/kaniko:v1.28.2"


def ti(task_id: str, *, run_id: str) -> Any:
    return SimpleNamespace(
        dag_id="benchmark",
        task_id=task_id,
        run_id=run_id,
        map_index=0,  # -1 (unmapped) is refused by the API until the map-index label is fixed
        try_number=1,
        xcom_push=lambda **_: None,
    )


_WATCHER_SCRIPT = """
import sys, time
from kubernetes import client, config, watch
configuration = client.Configuration()
config.load_kube_config(config_file=sys.argv[1], client_configuration=configuration)
api = client.ApiClient(configuration)
api.user_agent = sys.argv[3]
seen = set()
print("ready", flush=True)
for event in watch.Watch().stream(client.BatchV1Api(api).list_namespaced_job, sys.argv[2], timeout_seconds=3600):
    job = event["object"]
    for c in job.status.conditions or []:
        if c.type == "Complete" and c.status == "True" and job.metadata.name not in seen:
            seen.add(job.metadata.name)
            print(job.metadata.name, time.monotonic(), flush=True)
"""


class CompletionWatcher:
    """Records when each Job of a namespace is first seen Complete.

    A separate process with a watch of its own, so a busy event loop or the GIL in this process
    does not delay the reference time (CLOCK_MONOTONIC is shared by all processes on Linux).
    """

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        import subprocess

        self.seen: dict[str, float] = {}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _WATCHER_SCRIPT, str(cp.kubeconfig), namespace, WATCHER_AGENT],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # "ready": the watch is about to open
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.5)

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            name, stamp = line.split()
            self.seen.setdefault(name, float(stamp))

    def wait(self, name: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while name not in self.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.seen[name]

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)


def new_namespace(cp: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    cp.create_namespace(name)
    return name


# ---- one build per implementation -------------------------------------------------------------------


def ours_worker(namespace: str, delay: str) -> tuple[str, float]:
    from airflow_kaniko.operators.build import KanikoBuildOperator

    c = Kwok.succeed(message=DIGEST, delay=delay)
    op = KanikoBuildOperator(
        task_id="ours-worker",
        context="git://git.example.com/team/app.git#refs/heads/main",
        destinations=["registry.example.com/team/app:1"],
        namespace=namespace,
        pod_labels=c.labels,
        pod_annotations=c.annotations,
        stream_logs=False,
        deferrable=False,
        cleanup="keep",
    )
    result = op.execute({"ti": ti("ours-worker", run_id=namespace)})  # type: ignore[arg-type]
    return str(result["job_name"]), time.monotonic()


def ours_deferred(namespace: str, delay: str) -> tuple[str, float]:
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_kaniko.operators.build import KanikoBuildOperator

    c = Kwok.succeed(message=DIGEST, delay=delay)
    op = KanikoBuildOperator(
        task_id="ours-deferred",
        context="git://git.example.com/team/app.git#refs/heads/main",
        destinations=["registry.example.com/team/app:1"],
        namespace=namespace,
        pod_labels=c.labels,
        pod_annotations=c.annotations,
        deferrable=True,
        cleanup="keep",
    )
    try:
        op.execute({"ti": ti("ours-deferred", run_id=namespace)})  # type: ignore[arg-type]
    except TaskDeferred as deferred:
        trigger = deferred.trigger
    else:
        raise RuntimeError("did not defer")
    return str(trigger.job_name), asyncio.run(_first_event_time(trigger))


def _cncf_operator(namespace: str, delay: str, *, deferrable: bool) -> Any:
    from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

    c = Kwok.succeed(message=DIGEST, delay=delay)
    return KubernetesJobOperator(
        task_id="cncf-deferred" if deferrable else "cncf-worker",
        name="cncf",
        namespace=namespace,
        image=IMAGE,
        cmds=["/kaniko/executor"],
        labels=c.labels,
        annotations=c.annotations,
        wait_until_job_complete=True,
        deferrable=deferrable,
        parallelism=1,
        backoff_limit=0,
        get_logs=False,
        do_xcom_push=False,
    )


def cncf_context(task_id: str, namespace: str) -> dict[str, Any]:
    return {
        "ti": ti(task_id, run_id=namespace),
        "run_id": namespace,
        "dag": SimpleNamespace(dag_id="benchmark"),
        "task": SimpleNamespace(task_id=task_id),
    }


def cncf_worker(namespace: str, delay: str) -> tuple[str, float]:
    op = _cncf_operator(namespace, delay, deferrable=False)
    op.execute(cncf_context("cncf-worker", namespace))
    return str(op.job.metadata.name), time.monotonic()


def cncf_deferred(namespace: str, delay: str) -> tuple[str, float]:
    from airflow.sdk.exceptions import TaskDeferred

    op = _cncf_operator(namespace, delay, deferrable=True)
    try:
        op.execute(cncf_context("cncf-deferred", namespace))
    except TaskDeferred as deferred:
        trigger = deferred.trigger
    else:
        raise RuntimeError("did not defer")
    return str(op.job.metadata.name), asyncio.run(_first_event_time(trigger))


async def _first_event_time(trigger: Any) -> float:
    async for _event in trigger.run():
        return time.monotonic()
    raise RuntimeError("trigger ended without an event")


IMPLEMENTATIONS: dict[str, Callable[[str, str], tuple[str, float]]] = {
    "airflow-kaniko worker": ours_worker,
    "airflow-kaniko deferred": ours_deferred,
    "cncf KubernetesJobOperator worker": cncf_worker,
    "cncf KubernetesJobOperator deferred": cncf_deferred,
}


def measure(cp: ControlPlane, durations: list[int]) -> list[dict[str, Any]]:
    rows = []
    for seconds in durations:
        runs: dict[str, dict[str, Any]] = {}
        threads = []
        for label, fn in IMPLEMENTATIONS.items():
            namespace = new_namespace(cp, f"bench-{seconds}s")
            watcher = CompletionWatcher(cp, namespace)
            run: dict[str, Any] = {"namespace": namespace, "watcher": watcher}
            runs[label] = run

            def go(
                fn: Any = fn, run: dict[str, Any] = run, namespace: str = namespace, seconds: int = seconds
            ) -> None:
                # The provider lists the Job's pods right after creating the Job; when the Job
                # controller has not made the pod yet it fails ("No pods running with labels").
                # Counted, then retried in a fresh namespace.
                for _ in range(5):
                    try:
                        run["job"], run["noticed"] = fn(namespace, f"{seconds}s")
                        run.pop("error", None)
                        return
                    except BaseException as exc:
                        run["error"] = repr(exc)
                        if "No pods running" not in repr(exc):
                            return
                        run["pod_lookup_failures"] = run.get("pod_lookup_failures", 0) + 1
                        run["watcher"].close()
                        namespace = new_namespace(cp, f"bench-{seconds}s")
                        run["namespace"] = namespace
                        run["watcher"] = CompletionWatcher(cp, namespace)

            threads.append(threading.Thread(target=go, daemon=True))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds * 3 + 120)
        time.sleep(1.0)  # let the audit log catch up with the last requests
        for label, run in runs.items():
            watcher = run.pop("watcher")
            row: dict[str, Any] = {"implementation": label, "build_seconds": seconds}
            if run.get("pod_lookup_failures"):
                row["pod_lookup_failures"] = run["pod_lookup_failures"]
            if "error" in run:
                row["error"] = run["error"]
            else:
                complete = watcher.wait(run["job"])
                row["notice_latency_s"] = round(run["noticed"] - complete, 3)
                events = [
                    e
                    for e in cp.api_requests(namespace=run["namespace"])
                    if not str(e.get("userAgent", "")).startswith(WATCHER_AGENT)
                ]
                row["api_requests"] = len(events)
                verbs: dict[str, int] = {}
                for e in events:
                    key = f"{e['verb']} {e.get('objectRef', {}).get('resource', '?')}"
                    verbs[key] = verbs.get(key, 0) + 1
                row["requests_by_verb"] = dict(sorted(verbs.items()))
            watcher.close()
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


# ---- many deferred builds in one triggerer -----------------------------------------------------------


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _sockets_to(port: int) -> int:
    """Established TCP connections from this process's machine to the apiserver port."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def concurrent_deferred(cp: ControlPlane, count: int, build_seconds: int) -> dict[str, Any]:
    from airflow.sdk.exceptions import TaskDeferred

    from airflow_kaniko.operators.build import KanikoBuildOperator

    namespace = new_namespace(cp, f"bench-many-{count}")
    watcher = CompletionWatcher(cp, namespace)
    c = Kwok.succeed(message=DIGEST, delay=f"{build_seconds}s")
    triggers = []
    created = time.monotonic()
    for i in range(count):
        op = KanikoBuildOperator(
            task_id=f"b{i}",
            context="git://git.example.com/team/app.git#refs/heads/main",
            destinations=["registry.example.com/team/app:1"],
            namespace=namespace,
            pod_labels=c.labels,
            pod_annotations=c.annotations,
            deferrable=True,
            cleanup="keep",
        )
        try:
            op.execute({"ti": ti(f"b{i}", run_id=namespace)})  # type: ignore[arg-type]
        except TaskDeferred as deferred:
            triggers.append(deferred.trigger)
    created = time.monotonic() - created
    port = int(cp.server.rsplit(":", 1)[1])
    baseline_sockets = _sockets_to(port)
    rss_before = _rss_kib()

    async def main() -> dict[str, Any]:
        lag_max = 0.0
        lags: list[float] = []
        peak_sockets = 0
        peak_rss = rss_before
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal lag_max, peak_sockets, peak_rss
            while not done.is_set():
                t = time.monotonic()
                await asyncio.sleep(0.05)
                lag = time.monotonic() - t - 0.05
                lags.append(lag)
                lag_max = max(lag_max, lag)
                peak_sockets = max(peak_sockets, _sockets_to(port) - baseline_sockets)
                peak_rss = max(peak_rss, _rss_kib())

        noticed: dict[str, float] = {}

        async def one(trigger: Any) -> None:
            async for _ in trigger.run():
                noticed[trigger.job_name] = time.monotonic()
                return

        tick = asyncio.create_task(ticker())
        await asyncio.gather(*(one(t) for t in triggers))
        done.set()
        await tick
        latencies = sorted(noticed[name] - watcher.wait(name) for name in noticed)
        return {
            "triggers": len(triggers),
            "events": len(noticed),
            "notice_latency_p50_s": round(statistics.median(latencies), 3),
            "notice_latency_max_s": round(latencies[-1], 3),
            "event_loop_lag_max_ms": round(lag_max * 1000, 1),
            "event_loop_lag_p99_ms": round(sorted(lags)[int(len(lags) * 0.99) - 1] * 1000, 1),
            "peak_apiserver_connections": peak_sockets,
            "rss_growth_mib": round((peak_rss - rss_before) / 1024, 1),
        }

    result = asyncio.run(main())
    result["build_seconds"] = build_seconds
    result["create_all_seconds"] = round(created, 1)
    time.sleep(1.0)
    events = [
        e
        for e in cp.api_requests(namespace=namespace)
        if not str(e.get("userAgent", "")).startswith(WATCHER_AGENT)
    ]
    result["api_requests_per_build"] = round(len(events) / max(1, count), 1)
    watcher.close()
    print(json.dumps(result), flush=True)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--durations", type=int, nargs="*", default=[10, 60], help="build lengths, seconds")
    parser.add_argument(
        "--concurrent", type=int, default=200, help="deferred builds in one triggerer (0: skip)"
    )
    parser.add_argument("--concurrent-build-seconds", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    # Import everything before the threads start: concurrent first imports of Airflow deadlock.
    import airflow.providers.cncf.kubernetes.operators.job
    import airflow.providers.cncf.kubernetes.triggers.job
    import airflow.sdk.exceptions  # noqa: F401

    import airflow_kaniko.operators.build
    import airflow_kaniko.triggers  # noqa: F401

    t0 = time.monotonic()
    cp = ControlPlane(build_control_plane(), nodes=2, audit=True)
    cp.start()
    print(f"control plane up in {time.monotonic() - t0:.1f}s", flush=True)
    try:
        os.environ["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = cp.airflow_connection()
        report: dict[str, Any] = {"single_builds": measure(cp, args.durations)}
        if args.concurrent:
            report["concurrent_deferred"] = concurrent_deferred(
                cp, args.concurrent, args.concurrent_build_seconds
            )
    finally:
        cp.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
