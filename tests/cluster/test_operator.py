"""KanikoBuildOperator, KanikoJobTrigger and KanikoJobSensor against the real control plane.

A real kube-apiserver validates what the operator renders; the real Job controller runs the
backoff and the deadline; the garbage collector removes what a Job owns; kwok plays the pods
(see tests/cluster/kwok/stages.yaml and ``Kwok`` for the controls).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kubernetes import client

from airflow_kaniko.errors import BuildFailedError, InvalidInputError
from airflow_kaniko.naming import LABEL_PREFIX, BuildIdentity, build_key
from airflow_kaniko.operators.build import KanikoBuildOperator, identity_from_context
from airflow_kaniko.sensors.job import KanikoJobSensor
from airflow_kaniko.triggers import KanikoJobTrigger
from airflow_kaniko.version_compat import TaskDeferred
from tests.support.control_plane import ControlPlane, Kwok, PodControls, dump, pods_of_job, wait_until

DIGEST = "sha256:" + "5e" * 32
DESTINATIONS = ["registry.example.com:5000/team/app:1.0", "registry.example.com:5000/team/app:latest"]
GIT_CONTEXT = "git://git.example.com/team/app.git#refs/heads/main"
# The README's least-privilege ServiceAccount, Role and RoleBinding.
DEPLOY_RBAC = Path(__file__).resolve().parents[2] / "deploy" / "rbac.yaml"

# Until the map-index label is valid for unmapped tasks (see test_unmapped_task_job_is_accepted),
# the builds below run as map index 0.
MAP_INDEX = 0


def task_context(*, try_number: int = 1, task_id: str = "build", map_index: int = MAP_INDEX) -> Any:
    """What the operators read of an Airflow context: the task instance's identity."""
    ti = SimpleNamespace(
        dag_id="images",
        task_id=task_id,
        run_id="manual__2026-12-03T00:00:00+00:00",
        map_index=map_index,
        try_number=try_number,
    )
    return {"ti": ti}


@pytest.fixture(autouse=True)
def _kubernetes_connection(airflow_kubernetes_connection: str) -> None:
    """Every test here talks to the session cluster through AIRFLOW_CONN_KUBERNETES_DEFAULT."""


@pytest.fixture
def registry_connection(monkeypatch: pytest.MonkeyPatch) -> str:
    conn = {
        "conn_type": "generic",
        "host": "registry.example.com:5000",
        "login": "builder",
        "password": "s3cr3t",
    }
    monkeypatch.setenv("AIRFLOW_CONN_TEST_REGISTRY", json.dumps(conn))
    return "test_registry"


def make_operator(namespace: str, controls: PodControls, **kwargs: Any) -> KanikoBuildOperator:
    defaults: dict[str, Any] = {
        "task_id": "build",
        "context": GIT_CONTEXT,
        "destinations": DESTINATIONS,
        "namespace": namespace,
        "deferrable": False,
        "stream_logs": False,
        "container_resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "1Gi"}},
    }
    labels = {**controls.labels, **kwargs.pop("pod_labels", {})}
    annotations = {**controls.annotations, **kwargs.pop("pod_annotations", {})}
    return KanikoBuildOperator(**{**defaults, **kwargs}, pod_labels=labels, pod_annotations=annotations)


def jobs_of_task(batch_v1: Any, namespace: str, context: dict[str, Any]) -> list[Any]:
    key = build_key(identity_from_context(context))  # type: ignore[arg-type]
    return list(
        batch_v1.list_namespaced_job(namespace, label_selector=f"{LABEL_PREFIX}/build-key={key}").items
    )


def gone(read: Any) -> bool | None:
    try:
        read()
    except client.ApiException as exc:
        return True if exc.status == 404 else None
    return None


def run_in_thread(fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


def wait_running_pod(core_v1: Any, namespace: str, job_name: str) -> Any:
    return wait_until(
        f"a Running pod of {job_name}",
        lambda: next(
            (p for p in pods_of_job(core_v1, namespace, job_name) if p.status.phase == "Running"), None
        ),
    )


def wait_job_created(batch_v1: Any, namespace: str, context: dict[str, Any]) -> Any:
    return wait_until("the build Job", lambda: next(iter(jobs_of_task(batch_v1, namespace, context)), None))


# ---- the rendered Job against the API's validation ----------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="defaults"),
        pytest.param(
            {
                "context": "s3://build-contexts/team/app.tar.gz",
                "dockerfile": "docker/Dockerfile.prod",
                "build_args": {"PYTHON_VERSION": "3.12", "PIP_INDEX_URL": "https://pypi.example.com/simple"},
                "target": "runtime",
                "labels": {"org.opencontainers.image.source": "https://git.example.com/team/app"},
                "cache": True,
                "cache_repo": "registry.example.com:5000/team/app-cache",
                "docker_config_secret": "registry-creds",
                "image_pull_secrets": ["pull-creds"],
                "service_account_name": "kaniko-builder",
                "node_selector": {"kubernetes.io/arch": "amd64"},
                "tolerations": [{"key": "builds", "operator": "Exists", "effect": "NoSchedule"}],
                "extra_args": ["--snapshot-mode=redo", "--compressed-caching=false"],
                "env": {"AWS_REGION": "eu-west-1"},
                "ttl_seconds_after_finished": 600,
                "active_deadline_seconds": 900,
                "backoff_limit": 0,
            },
            id="everything",
        ),
        pytest.param({"context": "pvc://build-context/app"}, id="pvc"),
        pytest.param({"context": "local:///srv/app"}, id="local-configmap"),
        pytest.param(
            {"push": False, "destinations": ["registry.example.com:5000/team/app:1.0"]}, id="no-push"
        ),
    ],
)
def test_rendered_job_is_accepted(batch_v1: Any, namespace: str, options: dict[str, Any]) -> None:
    op = make_operator(namespace, Kwok.succeed(message=DIGEST), **options)
    identity = BuildIdentity(dag_id="images", task_id="build", run_id="manual__1", map_index=MAP_INDEX)
    rendered = op.render(identity)

    # Server-side dry run: full validation and admission, nothing stored.
    created = batch_v1.create_namespaced_job(namespace, rendered.job, dry_run="All")

    assert created.metadata.name == rendered.name
    assert (
        created.spec.template.spec.containers[0].args
        == rendered.job["spec"]["template"]["spec"]["containers"][0]["args"]
    )


def test_unmapped_task_job_is_accepted(batch_v1: Any, namespace: str) -> None:
    op = make_operator(namespace, Kwok.succeed(message=DIGEST))
    rendered = op.render(BuildIdentity(dag_id="images", task_id="build", run_id="manual__1", map_index=-1))

    batch_v1.create_namespaced_job(namespace, rendered.job, dry_run="All")


# ---- outcomes -------------------------------------------------------------------------------------


def test_success_returns_digest_and_cleans_up(core_v1: Any, batch_v1: Any, namespace: str) -> None:
    op = make_operator(namespace, Kwok.succeed(message=DIGEST, delay="1s"))

    result = op.execute(task_context())

    assert result["digest"] == DIGEST
    assert result["image"] == f"registry.example.com:5000/team/app@{DIGEST}"
    assert result["destinations"] == DESTINATIONS
    assert result["namespace"] == namespace
    # cleanup=delete_succeeded: the Job and (through the garbage collector) its pods go away.
    wait_until(
        "Job deleted", lambda: gone(lambda: batch_v1.read_namespaced_job(result["job_name"], namespace))
    )
    wait_until(
        "pods deleted", lambda: True if not pods_of_job(core_v1, namespace, result["job_name"]) else None
    )


def test_logs_stream_into_the_task_log(
    control_plane: ControlPlane, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ["INFO[0000] Retrieving image manifest alpine:3.20", "INFO[0002] Pushing image to registry"]
    control_plane.set_pod_logs(namespace, lines)
    op = make_operator(namespace, Kwok.succeed(message=DIGEST, delay="2s"), stream_logs=True)

    result = op.execute(task_context())

    assert result["digest"] == DIGEST
    logged = capsys.readouterr().out  # Airflow 3's task logger (structlog) writes to stdout here
    for line in lines:
        assert line in logged


def test_failure_goes_through_the_job_backoff(core_v1: Any, batch_v1: Any, namespace: str) -> None:
    message = "error building image: error resolving dockerfile path: please provide a valid path"
    op = make_operator(namespace, Kwok.fail(exit_code=1, message=message), backoff_limit=1)
    context = task_context()

    with pytest.raises(BuildFailedError) as failed:
        op.execute(context)

    text = str(failed.value)
    assert "BackoffLimitExceeded" in text
    assert "exited with code 1" in text
    assert message in text
    (job,) = jobs_of_task(batch_v1, namespace, context)  # cleanup keeps failed Jobs by default
    assert job.status.failed == 2, dump(job)
    assert len(pods_of_job(core_v1, namespace, job.metadata.name)) == 2


def test_oom_killed_build_says_so(namespace: str) -> None:
    op = make_operator(namespace, Kwok.oom(), backoff_limit=0)

    with pytest.raises(BuildFailedError, match="OOMKilled"):
        op.execute(task_context())


def test_image_pull_backoff_fails_fast_and_deletes_the_job(batch_v1: Any, namespace: str) -> None:
    # The deadline is an hour away: only the stuck-pod detection can end this test.
    op = make_operator(namespace, Kwok.waiting(), active_deadline_seconds=3600)
    context = task_context()

    with pytest.raises(BuildFailedError) as failed:
        op.execute(context)

    assert "ImagePullBackOff" in str(failed.value)
    assert "Back-off pulling image" in str(failed.value)
    wait_until("stuck Job deleted", lambda: True if not jobs_of_task(batch_v1, namespace, context) else None)


def test_unschedulable_pod_fails_after_the_policy(namespace: str) -> None:
    op = make_operator(
        namespace,
        PodControls(),
        node_selector=dict(Kwok.UNSCHEDULABLE_NODE_SELECTOR),
        unschedulable_seconds=1,
    )

    with pytest.raises(BuildFailedError, match="Unschedulable"):
        op.execute(task_context())


def test_missing_secret_fails_before_anything_is_created(batch_v1: Any, namespace: str) -> None:
    op = make_operator(namespace, Kwok.succeed(message=DIGEST), docker_config_secret="no-such-secret")
    context = task_context()

    with pytest.raises(InvalidInputError, match="no-such-secret"):
        op.execute(context)

    assert jobs_of_task(batch_v1, namespace, context) == []


def test_secret_missing_at_container_start_fails_fast(namespace: str) -> None:
    # What a kubelet reports when a Secret referenced by the pod disappears before it starts.
    controls = Kwok.waiting(reason="CreateContainerConfigError", message='secret "registry-creds" not found')
    op = make_operator(namespace, controls)

    with pytest.raises(BuildFailedError) as failed:
        op.execute(task_context())

    assert "CreateContainerConfigError" in str(failed.value)
    assert 'secret "registry-creds" not found' in str(failed.value)


def test_deadline_exceeded(namespace: str) -> None:
    op = make_operator(namespace, Kwok.running(), active_deadline_seconds=2)

    with pytest.raises(BuildFailedError, match="DeadlineExceeded"):
        op.execute(task_context())


# ---- deferrable path, sensor ------------------------------------------------------------------------


async def _run_trigger(trigger: KanikoJobTrigger) -> dict[str, Any]:
    events = []
    async for event in trigger.run():
        events.append(event)
        break
    (event,) = events
    return dict(event.payload)


def test_deferrable_success_through_the_trigger(namespace: str) -> None:
    op = make_operator(namespace, Kwok.succeed(message=DIGEST, delay="1s"), deferrable=True)
    context = task_context()

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, KanikoJobTrigger)
    # What the triggerer does: rebuild the trigger from its serialized form, run it.
    path, kwargs = trigger.serialize()
    assert path == "airflow_kaniko.triggers.KanikoJobTrigger"
    event = asyncio.run(_run_trigger(KanikoJobTrigger(**kwargs)))
    assert event["phase"] == "succeeded"
    assert event["digest"] == DIGEST

    result = getattr(op, deferred.value.method_name)(context, event)

    assert result["digest"] == DIGEST
    assert result["job_name"] == trigger.job_name


def test_deferrable_failure_through_the_trigger(namespace: str) -> None:
    op = make_operator(
        namespace, Kwok.fail(exit_code=3, message="push denied"), deferrable=True, backoff_limit=0
    )
    context = task_context()

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = asyncio.run(_run_trigger(deferred.value.trigger))

    assert event["phase"] == "failed"
    assert event["exit_code"] == 3
    with pytest.raises(BuildFailedError, match="push denied"):
        getattr(op, deferred.value.method_name)(context, event)


def test_sensor_waits_for_a_build_started_without_waiting(namespace: str) -> None:
    op = make_operator(namespace, Kwok.succeed(message=DIGEST, delay="2s"), wait_for_completion=False)
    submitted = op.execute(task_context())
    assert submitted["digest"] is None

    sensor = KanikoJobSensor(task_id="wait", job_name=submitted["job_name"], namespace=namespace)
    result = wait_until("sensor done", lambda: _poke_value(sensor), timeout=60, interval=0.5)

    assert result["digest"] == DIGEST
    assert result["job_name"] == submitted["job_name"]


def _poke_value(sensor: KanikoJobSensor) -> dict[str, Any] | None:
    answer: Any = sensor.poke(task_context(task_id="wait"))
    if answer is False:
        return None
    return dict(answer.xcom_value)


def test_deferrable_sensor_through_the_trigger(namespace: str) -> None:
    op = make_operator(namespace, Kwok.succeed(message=DIGEST, delay="3s"), wait_for_completion=False)
    submitted = op.execute(task_context())
    sensor = KanikoJobSensor(
        task_id="wait", job_name=submitted["job_name"], namespace=namespace, deferrable=True, timeout=120
    )
    context = task_context(task_id="wait")

    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    assert deferred.value.trigger.delete_on_kill is False
    event = asyncio.run(_run_trigger(deferred.value.trigger))
    result = getattr(sensor, deferred.value.method_name)(context, event)

    assert result["digest"] == DIGEST


# ---- kill, reattach, restart -------------------------------------------------------------------------


def test_kill_deletes_job_pods_and_short_lived_secret(
    core_v1: Any, batch_v1: Any, namespace: str, registry_connection: str
) -> None:
    op = make_operator(namespace, Kwok.running(), registry_conn_id=registry_connection)
    context = task_context()
    future = run_in_thread(op.execute, context)
    job = wait_job_created(batch_v1, namespace, context)
    name = job.metadata.name
    wait_running_pod(core_v1, namespace, name)
    secret = core_v1.read_namespaced_secret(f"{name}-docker-config", namespace)
    assert secret.type == "kubernetes.io/dockerconfigjson"
    assert secret.metadata.owner_references[0].uid == job.metadata.uid

    op.on_kill()

    with pytest.raises(BuildFailedError):
        future.result(timeout=60)
    wait_until("Job gone", lambda: gone(lambda: batch_v1.read_namespaced_job(name, namespace)))
    wait_until(
        "Secret gone",
        lambda: gone(lambda: core_v1.read_namespaced_secret(f"{name}-docker-config", namespace)),
    )
    wait_until("pods gone", lambda: True if not pods_of_job(core_v1, namespace, name) else None)


def test_killing_a_deferred_build_deletes_it(core_v1: Any, batch_v1: Any, namespace: str) -> None:
    op = make_operator(namespace, Kwok.running(), deferrable=True)
    context = task_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    trigger = deferred.value.trigger
    wait_running_pod(core_v1, namespace, trigger.job_name)

    asyncio.run(trigger.on_kill())

    wait_until("Job gone", lambda: gone(lambda: batch_v1.read_namespaced_job(trigger.job_name, namespace)))
    wait_until("pods gone", lambda: True if not pods_of_job(core_v1, namespace, trigger.job_name) else None)


def test_rerun_of_the_same_try_reattaches_to_its_job(batch_v1: Any, namespace: str) -> None:
    controls = Kwok.succeed(message=DIGEST, delay="3s")
    context = task_context()
    # The first worker creates the Job and goes away (deferring is the clean way to leave).
    first = make_operator(namespace, controls, deferrable=True, cleanup="keep")
    with pytest.raises(TaskDeferred):
        first.execute(context)

    # A second execute of the same try (worker crash, re-queue) finds the Job and waits for it.
    second = make_operator(namespace, controls, cleanup="keep")
    result = second.execute(context)

    assert result["digest"] == DIGEST
    assert len(jobs_of_task(batch_v1, namespace, context)) == 1
    # Once more after success: the result again, still one Job.
    third = make_operator(namespace, controls, cleanup="keep")
    assert third.execute(context) == result
    assert len(jobs_of_task(batch_v1, namespace, context)) == 1


def test_new_try_after_failure_starts_a_new_job(batch_v1: Any, namespace: str) -> None:
    with pytest.raises(BuildFailedError):
        make_operator(namespace, Kwok.fail(), backoff_limit=0).execute(task_context(try_number=1))

    second = make_operator(namespace, Kwok.succeed(message=DIGEST), cleanup="keep")
    result = second.execute(task_context(try_number=2))

    assert result["digest"] == DIGEST
    jobs = jobs_of_task(batch_v1, namespace, task_context())
    assert sorted(j.metadata.name.rsplit("-", 1)[1] for j in jobs) == ["1", "2"]
    assert result["job_name"].endswith("-2")


def test_watch_survives_an_apiserver_restart(
    control_plane: ControlPlane, core_v1: Any, batch_v1: Any, namespace: str
) -> None:
    op = make_operator(namespace, Kwok.succeed(message=DIGEST, delay="8s"))
    context = task_context()
    future = run_in_thread(op.execute, context)
    job = wait_job_created(batch_v1, namespace, context)
    wait_running_pod(core_v1, namespace, job.metadata.name)

    control_plane.restart_apiserver(down_for=1.0)

    result = future.result(timeout=120)
    assert result["digest"] == DIGEST


# ---- least privilege ------------------------------------------------------------------------------


def test_least_privilege_service_account_can_build_and_no_more(
    control_plane: ControlPlane,
    k8s_client: Any,
    core_v1: Any,
    namespace: str,
    registry_connection: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rbac = client.RbacAuthorizationV1Api(k8s_client)
    documents = {d["kind"]: d for d in yaml.safe_load_all(DEPLOY_RBAC.read_text()) if d}
    core_v1.create_namespaced_service_account(namespace, documents["ServiceAccount"])
    rbac.create_namespaced_role(namespace, documents["Role"])
    rbac.create_namespaced_role_binding(namespace, documents["RoleBinding"])
    account = documents["ServiceAccount"]["metadata"]["name"]
    kubeconfig = control_plane.service_account_kubeconfig(namespace, account)
    monkeypatch.setenv(
        "AIRFLOW_CONN_KUBERNETES_DEFAULT",
        control_plane.airflow_connection(namespace=namespace, kubeconfig=kubeconfig),
    )

    # A build with a short-lived registry Secret, deferred and not: everything it needs is allowed.
    result = make_operator(
        namespace, Kwok.succeed(message=DIGEST), registry_conn_id=registry_connection
    ).execute(task_context())
    assert result["digest"] == DIGEST
    op = make_operator(namespace, Kwok.succeed(message=DIGEST), deferrable=True)
    context = task_context(task_id="build-deferred")
    op.task_id = "build-deferred"
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = asyncio.run(_run_trigger(deferred.value.trigger))
    assert getattr(op, deferred.value.method_name)(context, event)["digest"] == DIGEST

    # ... and no more: nothing in other namespaces, no pods of its own making, no deleting pods
    # (the Job controller does), no changing Secrets, no nodes, no RBAC.
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        sa_core, sa_batch = client.CoreV1Api(api), client.BatchV1Api(api)
        forbidden_calls: list[Any] = [
            lambda: sa_batch.list_namespaced_job("default"),
            lambda: sa_core.list_namespaced_secret("default"),
            lambda: sa_core.list_namespaced_secret(namespace),  # deletes its Secrets by name instead
            lambda: sa_core.create_namespaced_pod(
                namespace,
                client.V1Pod(
                    metadata=client.V1ObjectMeta(name="direct"),
                    spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]),
                ),
            ),
            lambda: sa_core.delete_namespaced_pod("any", namespace),
            lambda: sa_core.patch_namespaced_secret("any", namespace, {"metadata": {"labels": {"a": "b"}}}),
            lambda: sa_core.list_node(),
            lambda: client.RbacAuthorizationV1Api(api).list_namespaced_role(namespace),
        ]
        for forbidden in forbidden_calls:
            with pytest.raises(client.ApiException) as denied:
                forbidden()
            assert denied.value.status == 403
