"""The example DAGs under the real ``airflow dags test`` against the real control plane.

Each test runs ``airflow dags test`` as a subprocess (its own ``AIRFLOW_HOME``, SQLite metadata
database, ``dags/`` as the DAGs folder) with ``kubernetes_default`` pointing at the session's
kube-apiserver and the DAGs' Variables pointing at a real registry on loopback (anonymous,
plain HTTP). kwok does not run kaniko: a build pod completes with the termination message its
pod annotation names (``tests/cluster/kwok/stages.yaml``), so the test plays kaniko's push. It
pushes a tiny real image under the exact tags the DAG builds and makes the build pod report
that image's digest (Variable ``kaniko_pod_annotations``). The DAG's verify step then asks the
real registry whether every tag resolves to the digest the build reported: the wiring from
Variables through the Job, the pod's termination message, XCom and the registry, end to end.

kwok completes only pods owned by a Job. The data pipeline's ``report`` pod (a
KubernetesPodOperator pod, owned by nothing) therefore gets its status set to Succeeded by the
test, acting as the kubelet, once it has recorded the image the pod was created with.

Run: ``.venv/bin/pytest tests/cluster/test_dags.py`` (about 100 s on 2 cores: each
``airflow dags test`` is 15-25 s). Each run's whole output is kept as
``<airflow home>/dags-test-<dag_id>-*.log`` under pytest's basetemp; a failure names the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.control_plane import ControlPlane, Kwok
from tests.support.registry import (
    OciImage,
    RunningRegistry,
    build_image,
    push_layout,
    registry_unavailable_reason,
    start_registry,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DAGS_FOLDER = REPO_ROOT / "dags"
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DESTINATIONS_ANNOTATION = "airflow-kaniko.io/destinations"
RUN_ID_ANNOTATION = "airflow-kaniko.io/run-id"
DAG_TIMEOUT = 240.0
LOGICAL_DATE = "2026-12-01"


# ---- servers and an Airflow home --------------------------------------------------------------


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    reason = registry_unavailable_reason()
    if reason is not None:
        pytest.skip(f"DAG tests need a registry: {reason}")
    running = start_registry(tmp_path_factory.mktemp("dags-registry"))
    try:
        yield running
    finally:
        running.stop()


def _base_env(airflow_home: Path) -> dict[str, str]:
    """The parent's environment minus any Airflow settings, plus a home of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_", "AIRFLOW__"))}
    env.update(
        {
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The DAGs retry builds (the default 300 s delay would dominate a failing test);
            # explicit retry_delay values in the DAGs still apply.
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh AIRFLOW_HOME with a migrated SQLite database, shared by this module's runs."""
    home = tmp_path_factory.mktemp("airflow-home")
    proc = subprocess.run(
        [AIRFLOW, "db", "migrate"],
        env=_base_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return home


@pytest.fixture(scope="module")
def tiny_image(tmp_path_factory: pytest.TempPathFactory) -> OciImage:
    """What the test pushes in kaniko's place: a real one-layer image."""
    return build_image(tmp_path_factory.mktemp("tiny-image"), content=b"built by the DAG tests\n")


# ---- kaniko's and the kubelet's part, played by the test --------------------------------------


@dataclass
class SeenJob:
    name: str
    destinations: list[str]
    run_id: str


@dataclass
class SeenPod:
    name: str
    image: str
    args: list[str]
    annotations: dict[str, str]


@dataclass
class StandIn:
    """Watches the namespace while a DAG runs.

    For every new Job it records the destinations (and, with ``push``, pushes ``image`` to
    each of them in the registry, as kaniko would before exiting). Pods owned by nothing
    (KubernetesPodOperator pods) are recorded and then completed: kwok leaves them Running.
    """

    api_client: Any
    namespace: str
    registry: RunningRegistry
    image: OciImage
    push: bool = False
    jobs: list[SeenJob] = field(default_factory=list)
    pods: list[SeenPod] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run_jobs(self) -> None:
        from kubernetes import client

        batch = client.BatchV1Api(self.api_client)
        seen: set[str] = set()
        while not self._stop.is_set():
            try:
                for job in batch.list_namespaced_job(self.namespace).items:
                    if job.metadata.name in seen:
                        continue
                    seen.add(job.metadata.name)
                    annotations = job.metadata.annotations or {}
                    destinations = json.loads(annotations.get(DESTINATIONS_ANNOTATION, "[]"))
                    if self.push:
                        prefix = f"{self.registry.host}/"
                        for destination in destinations:
                            assert destination.startswith(prefix), destination
                            push_layout(self.registry, self.image, destination.removeprefix(prefix))
                    self.jobs.append(
                        SeenJob(job.metadata.name, destinations, annotations.get(RUN_ID_ANNOTATION, ""))
                    )
            except Exception as exc:  # reported by the test, never swallowed
                self.errors.append(f"jobs: {type(exc).__name__}: {exc}")
                return
            self._stop.wait(0.2)

    def run_pods(self) -> None:
        """A watch, not a poll: the pod should be Succeeded before the operator sees it Running."""
        from kubernetes import client, watch

        core = client.CoreV1Api(self.api_client)
        done: set[str] = set()
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    core.list_namespaced_pod, self.namespace, timeout_seconds=1
                ):
                    pod = event["object"]
                    if pod.metadata.owner_references or pod.metadata.name in done:
                        continue
                    if pod.status.phase != "Running" or pod.metadata.deletion_timestamp is not None:
                        continue
                    done.add(pod.metadata.name)
                    container = pod.spec.containers[0]
                    self.pods.append(
                        SeenPod(
                            pod.metadata.name,
                            container.image,
                            list(container.args or []),
                            dict(pod.metadata.annotations or {}),
                        )
                    )
                    self._complete(core, pod)
            except Exception as exc:
                self.errors.append(f"pods: {type(exc).__name__}: {exc}")
                return

    @staticmethod
    def _complete(core: Any, pod: Any) -> None:
        """Set the pod Succeeded, exit 0, as a kubelet would.

        The container "finished" an hour ago: the cncf provider follows a container's log until
        ``post_termination_timeout`` (120 s) after it finished, and kwok's follow stream never
        ends, so a fresh finishedAt would keep the report task reading logs for minutes.
        """
        stamp = "%Y-%m-%dT%H:%M:%SZ"
        finished = time.strftime(stamp, time.gmtime(time.time() - 3600))
        started = time.strftime(stamp, time.gmtime(time.time() - 3601))
        now = time.strftime(stamp, time.gmtime())
        statuses = [
            {
                "name": c.name,
                "image": c.image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "state": {
                    "terminated": {
                        "exitCode": 0,
                        "reason": "Completed",
                        "startedAt": started,
                        "finishedAt": finished,
                    }
                },
            }
            for c in pod.spec.containers
        ]
        conditions = [
            {"type": kind, "status": "False", "reason": "PodCompleted", "lastTransitionTime": now}
            for kind in ("Ready", "ContainersReady")
        ]
        core.patch_namespaced_pod_status(
            pod.metadata.name,
            pod.metadata.namespace,
            {"status": {"phase": "Succeeded", "conditions": conditions, "containerStatuses": statuses}},
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[StandIn]:
        threads = [
            threading.Thread(target=self.run_jobs, name="stand-in-jobs", daemon=True),
            threading.Thread(target=self.run_pods, name="stand-in-pods", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=10)


@pytest.fixture
def stand_in(
    control_plane: ControlPlane, namespace: str, registry: RunningRegistry, tiny_image: OciImage
) -> Iterator[StandIn]:
    api = control_plane.api_client()
    try:
        yield StandIn(api, namespace, registry, tiny_image)
    finally:
        api.close()


# ---- running a DAG ----------------------------------------------------------------------------


@dataclass
class DagRun:
    dag_id: str
    returncode: int
    output: str
    run_id: str | None
    state: str | None
    log: Path

    def explain(self) -> str:
        return (
            f"`airflow dags test {self.dag_id}` exited {self.returncode} (whole output: {self.log}); "
            f"tail:\n{self.output[-8000:]}"
        )


_FINISHED = re.compile(
    r"DagRun Finished: dag_id=(?P<dag>[^,]+), .*?run_id=(?P<run>[^,]+), .*?state=(?P<state>\w+)"
)


def dag_env(
    airflow_home: Path,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    namespace: str,
    variables: Mapping[str, Any],
) -> dict[str, str]:
    env = _base_env(airflow_home)
    env["AIRFLOW_CONN_KUBERNETES_DEFAULT"] = control_plane.airflow_connection(namespace=namespace)
    settings: dict[str, Any] = {
        "kaniko_registry": registry.host,
        "kaniko_insecure_registries": [registry.host],
        "kaniko_namespace": namespace,
        **variables,
    }
    for key, value in settings.items():
        env[f"AIRFLOW_VAR_{key.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env


def airflow_dags_test(dag_id: str, env: Mapping[str, str], *args: str) -> DagRun:
    proc = subprocess.run(
        [AIRFLOW, "dags", "test", dag_id, *args],
        env=dict(env),
        cwd=env["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        timeout=DAG_TIMEOUT,
        check=False,
    )
    output = proc.stdout + proc.stderr
    log = Path(env["AIRFLOW_HOME"]) / f"dags-test-{dag_id}-{time.monotonic_ns()}.log"
    log.write_text(output)
    finished = [m for m in _FINISHED.finditer(output) if m["dag"] == dag_id]
    last = finished[-1] if finished else None
    return DagRun(
        dag_id, proc.returncode, output, last["run"] if last else None, last["state"] if last else None, log
    )


def task_states(run: DagRun, env: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """``airflow tasks states-for-dag-run``: {(task_id, map_index): state}."""
    assert run.run_id is not None, run.explain()
    proc = subprocess.run(
        [AIRFLOW, "tasks", "states-for-dag-run", run.dag_id, run.run_id, "-o", "json"],
        env=dict(env),
        cwd=env["AIRFLOW_HOME"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]
    rows = json.loads(proc.stdout[proc.stdout.index("[") :])
    return {(row["task_id"], str(row.get("map_index", ""))): row["state"] for row in rows}


def manifest_requests(registry: RunningRegistry, repository: str, ref: str) -> int:
    """How many manifest requests from airflow-kaniko's registry client the registry answered 200."""
    line = re.compile(
        rf'"(?:HEAD|GET) /v2/{re.escape(repository)}/manifests/{re.escape(ref)} HTTP/1\.1" 200 .*"airflow-kaniko/'
    )
    return sum(1 for text in registry.log().splitlines() if line.search(text))


def build_succeeds_with(image: OciImage, *, delay: str | None = None) -> dict[str, str]:
    """The build pod annotations that make kwok end the pod as kaniko would: exit 0, the digest."""
    controls = Kwok.succeed(message=image.digest, delay=delay)
    return dict(controls.annotations)


# ---- the DAGs ---------------------------------------------------------------------------------


def test_nightly_images_builds_and_verifies_every_image(
    airflow_home: Path,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    namespace: str,
    tiny_image: OciImage,
    stand_in: StandIn,
) -> None:
    images = sorted(p.name for p in (DAGS_FOLDER / "images").iterdir() if (p / "Dockerfile").exists())
    assert len(images) >= 2, "the default matrix is dags/images/*"
    tags = ("nightly-20261201", "latest")
    for name in images:
        for tag in tags:
            assert push_layout(registry, tiny_image, f"{name}:{tag}") == tiny_image.digest
    env = dag_env(
        airflow_home,
        control_plane,
        registry,
        namespace,
        {"kaniko_pod_annotations": build_succeeds_with(tiny_image)},
    )

    with stand_in.running():
        run = airflow_dags_test("kaniko_nightly_images", env, LOGICAL_DATE)

    assert not stand_in.errors
    assert run.returncode == 0 and run.state == "success", run.explain()
    states = task_states(run, env)
    expected = {("image_matrix", "")} | {
        (task, str(i)) for task in ("prepare", "build", "verify") for i in range(len(images))
    }
    assert states == dict.fromkeys(expected, "success"), states
    # one Job per image, pushing exactly the tags the DAG computes
    assert sorted(sorted(job.destinations) for job in stand_in.jobs) == sorted(
        sorted(f"{registry.host}/{name}:{tag}" for tag in tags) for name in images
    )
    for name in images:
        for tag in tags:
            assert manifest_requests(registry, name, tag) >= 1, (
                f"verify never asked the registry for {name}:{tag}"
            )
            assert f"{registry.host}/{name}:{tag}: found {tiny_image.digest}" in run.output


def test_manual_build_from_the_form(
    airflow_home: Path,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    namespace: str,
    tiny_image: OciImage,
    stand_in: StandIn,
) -> None:
    image, tags = "team/app", ["v1.2.3", "stable"]
    for tag in tags:
        push_layout(registry, tiny_image, f"{image}:{tag}")
    env = dag_env(
        airflow_home,
        control_plane,
        registry,
        namespace,
        {"kaniko_pod_annotations": build_succeeds_with(tiny_image)},
    )
    conf = {
        "repository": "github.com/example/app.git",
        "ref": "refs/tags/v1.2.3",
        "image": image,
        "tags": tags,
        "build_args": {"VERSION": "1.2.3"},
    }

    with stand_in.running():
        run = airflow_dags_test("kaniko_manual_build", env, "-c", json.dumps(conf))

    assert not stand_in.errors
    assert run.returncode == 0 and run.state == "success", run.explain()
    states = task_states(run, env)
    assert states == dict.fromkeys(
        [("plan", ""), ("build", ""), ("pushed", ""), ("verify", "")], "success"
    ), states
    assert [job.destinations for job in stand_in.jobs] == [[f"{registry.host}/{image}:{t}" for t in tags]]
    verified = f"verified {', '.join(f'{registry.host}/{image}:{t}' for t in tags)}: {tiny_image.digest}"
    assert verified in run.output
    for tag in tags:
        assert manifest_requests(registry, image, tag) >= 1


def test_manual_build_with_an_invalid_image_name_fails_before_any_job(
    airflow_home: Path,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    namespace: str,
    batch_v1: Any,
    tiny_image: OciImage,
) -> None:
    # The form's pattern accepts it (lowercase, well separated); the reference grammar does not:
    # a repository name longer than 255 characters.
    image = "team/" + "a" * 260
    env = dag_env(
        airflow_home,
        control_plane,
        registry,
        namespace,
        {"kaniko_pod_annotations": build_succeeds_with(tiny_image)},
    )

    run = airflow_dags_test("kaniko_manual_build", env, "-c", json.dumps({"image": image, "tags": ["v1"]}))

    assert run.state == "failed", run.explain()
    states = task_states(run, env)
    assert states[("plan", "")] == "success", states
    assert states[("build", "")] == "failed", states
    assert states.get(("verify", "")) == "upstream_failed", states
    assert "InvalidInputError" in run.output and "is longer than 255 characters" in run.output, run.explain()
    assert batch_v1.list_namespaced_job(namespace).items == []


def test_data_pipeline_runs_the_built_image_by_digest(
    airflow_home: Path,
    control_plane: ControlPlane,
    registry: RunningRegistry,
    namespace: str,
    tiny_image: OciImage,
    stand_in: StandIn,
) -> None:
    # The tag comes from the run id, which `airflow dags test` picks at run time: the stand-in
    # pushes when the Job appears; the build pod runs 3 s before it reports the digest.
    stand_in.push = True
    # The report task reads its pod's log; kwok answers 400 ("no logs found") unless told what
    # to serve. Only KubernetesPodOperator's container ("base"): not the build pods.
    control_plane.set_pod_logs(namespace, ["report for 2026-12-01: 42 rows"], containers=["base"])
    env = dag_env(
        airflow_home,
        control_plane,
        registry,
        namespace,
        {
            "kaniko_pod_annotations": build_succeeds_with(tiny_image, delay="3s"),
            "pipeline_pod_annotations": {"example.com/cost-centre": "data"},
        },
    )

    with stand_in.running():
        run = airflow_dags_test("kaniko_data_pipeline", env, LOGICAL_DATE)

    assert not stand_in.errors
    assert run.returncode == 0 and run.state == "success", run.explain()
    states = task_states(run, env)
    assert states == dict.fromkeys(
        [("targets", ""), ("prepare", ""), ("build", ""), ("verify", ""), ("report", "")], "success"
    ), states

    [job] = stand_in.jobs
    assert job.run_id == run.run_id
    tag = "run-" + hashlib.sha256(run.run_id.encode()).hexdigest()[:12]
    assert job.destinations == [f"{registry.host}/report-runner:{tag}"]
    assert manifest_requests(registry, "report-runner", tag) >= 1, "verify never asked the registry"

    [pod] = stand_in.pods
    assert pod.image == f"{registry.host}/report-runner@{tiny_image.digest}"
    assert pod.args == [LOGICAL_DATE]
    assert pod.annotations.get("example.com/cost-centre") == "data"
