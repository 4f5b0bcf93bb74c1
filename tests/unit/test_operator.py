"""KanikoBuildOperator against the in-memory API: what a DAG author sees."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

from airflow_kaniko.errors import BuildFailedError, InvalidInputError
from airflow_kaniko.operators.build import KanikoBuildOperator
from airflow_kaniko.triggers import KanikoJobTrigger
from airflow_kaniko.version_compat import TaskDeferred
from tests.support.fake_kube import FakeKube
from tests.unit.conftest import (
    DIGEST,
    SUCCESS,
    Controller,
    FakeHook,
    complete_job,
    fail_job,
    finish_pod,
    run_pod,
    start_pod,
    task_context,
    wait_pod,
)

DEST = ["registry.example.com:5000/team/app:1.0", "registry.example.com:5000/team/app:latest"]


def make_operator(fake_hook: FakeHook, **kwargs: Any) -> KanikoBuildOperator:
    defaults: dict[str, Any] = {
        "task_id": "build",
        "context": "git://git.example.com/team/app.git#refs/heads/main",
        "destinations": DEST,
        "docker_config_secret": None,
        "deferrable": False,
    }
    op = KanikoBuildOperator(**{**defaults, **kwargs})
    op.__dict__["hook"] = fake_hook  # the cached_property seam
    return op


def jobs(kube: FakeKube) -> list[dict[str, Any]]:
    return kube.list("jobs", "default")


def test_success_returns_digest_xcom_and_streams_log(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, capsys: pytest.CaptureFixture[str]
) -> None:
    controller.script = SUCCESS
    op = make_operator(fake_hook)
    result = op.execute(task_context())
    logged = capsys.readouterr().out
    assert result["digest"] == DIGEST
    assert result["image"] == f"registry.example.com:5000/team/app@{DIGEST}"
    assert result["destinations"] == DEST
    assert result["namespace"] == "default"
    assert result["job_name"].startswith("kaniko-build-")
    assert "INFO Pushing image" in logged
    # cleanup=delete_succeeded: the Job is gone after success
    assert jobs(kube) == []


def test_keep_policy_leaves_finished_job(kube: FakeKube, controller: Controller, fake_hook: FakeHook) -> None:
    controller.script = SUCCESS
    make_operator(fake_hook, cleanup="keep").execute(task_context())
    assert len(jobs(kube)) == 1


def test_failure_reports_exit_code_and_kaniko_message(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook
) -> None:
    controller.script = [
        start_pod(),
        run_pod(),
        finish_pod(exit_code=3, message="error building image: RUN exit 3: command failed"),
        fail_job(),
    ]
    with pytest.raises(BuildFailedError) as err:
        make_operator(fake_hook).execute(task_context())
    text = str(err.value)
    assert "BackoffLimitExceeded" in text
    assert "exit" in text and "code 3" in text
    assert "RUN exit 3: command failed" in text
    assert len(jobs(kube)) == 1  # a failed Job is kept for inspection (until its TTL)


def test_oom_is_named(kube: FakeKube, controller: Controller, fake_hook: FakeHook) -> None:
    controller.script = [
        start_pod(),
        run_pod(),
        finish_pod(exit_code=137, reason="OOMKilled", message=""),
        fail_job(),
    ]
    with pytest.raises(BuildFailedError, match="OOMKilled"):
        make_operator(fake_hook).execute(task_context())


def test_stuck_image_pull_fails_fast_and_deletes_job(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook
) -> None:
    controller.script = [
        start_pod(),
        wait_pod(reason="ImagePullBackOff", message='Back-off pulling image "nope:1"'),
    ]
    with pytest.raises(BuildFailedError, match="ImagePullBackOff"):
        make_operator(fake_hook).execute(task_context())
    assert jobs(kube) == []
    assert kube.list("pods", "default") == []


def test_missing_named_secret_fails_before_anything_is_created(kube: FakeKube, fake_hook: FakeHook) -> None:
    with pytest.raises(InvalidInputError, match="'regcred' does not exist in namespace 'default'"):
        make_operator(fake_hook, docker_config_secret="regcred").execute(task_context())
    assert jobs(kube) == []


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"destinations": ["Registry.io/Team/App:1"]}, "Team"),
        ({"destinations": ["reg.io/app@sha256:" + "a" * 64]}, "digest"),
        ({"build_args": {"1BAD": "x"}}, "1BAD"),
        ({"labels": {"bad key!": "x"}}, "bad key!"),
        ({"namespace": "Not_Valid"}, "Not_Valid"),
        ({"context": "ftp://host/ctx.tar.gz"}, "ftp"),
        ({"container_resources": {"limits": {"memory": "lots"}}}, "lots"),
        ({"extra_args": ["--destination=other:1"]}, "--destination"),
    ],
)
def test_bad_input_is_rejected_before_the_cluster_is_touched(
    kube: FakeKube, fake_hook: FakeHook, kwargs: dict[str, Any], named: str
) -> None:
    with pytest.raises(InvalidInputError, match=named.replace("!", ".").replace("$", ".")):
        make_operator(fake_hook, **kwargs).execute(task_context())
    assert kube.requests == []


def test_registry_connection_becomes_owned_secret_not_args(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MY_REGISTRY",
        json.dumps(
            {
                "conn_type": "generic",
                "host": "registry.example.com:5000",
                "login": "bot",
                "password": "s3cr3t-pw",
            }
        ),
    )
    controller.script = [start_pod(), run_pod()]  # keep it running; we inspect and then finish it
    op = make_operator(fake_hook, registry_conn_id="my_registry", cleanup="keep")
    controller.script = SUCCESS
    op.execute(task_context())
    (job,) = jobs(kube)
    (secret,) = kube.list("secrets", "default")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert secret["metadata"]["ownerReferences"][0]["name"] == job["metadata"]["name"]
    config = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    assert config["auths"]["registry.example.com:5000"]["password"] == "s3cr3t-pw"
    assert "s3cr3t-pw" not in json.dumps(job)
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"key": ".dockerconfigjson", "path": "config.json"} in volumes[0]["secret"]["items"]
    # the Job was created suspended and let go only once its Secret existed
    assert job["spec"]["suspend"] is False


def test_rerun_of_same_try_reattaches_to_running_job(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook
) -> None:
    controller.script = [start_pod(), run_pod()]
    first = make_operator(fake_hook, wait_for_completion=False)
    submitted = first.execute(task_context())
    controller.join()
    # the worker died; the same try runs again while the build is still going
    controller.script = []
    import threading

    def finish_later() -> None:
        import time

        time.sleep(0.3)
        finish_pod()(kube, "default", submitted["job_name"])
        complete_job()(kube, "default", submitted["job_name"])

    t = threading.Thread(target=finish_later)
    t.start()
    result = make_operator(fake_hook, cleanup="keep").execute(task_context())
    t.join()
    assert result["job_name"] == submitted["job_name"]
    assert len(jobs(kube)) == 1
    assert sum(1 for m, p in kube.requests if m == "POST" and p.endswith("/jobs")) == 1


def test_new_try_after_success_returns_result_without_rebuilding(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook
) -> None:
    controller.script = SUCCESS
    first = make_operator(fake_hook, cleanup="keep").execute(task_context(try_number=1))
    again = make_operator(fake_hook, cleanup="keep").execute(task_context(try_number=2))
    assert again == first
    assert len(jobs(kube)) == 1


def test_new_try_after_failure_starts_a_new_job(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook
) -> None:
    controller.script = [start_pod(), run_pod(), finish_pod(exit_code=1, message="boom"), fail_job()]
    with pytest.raises(BuildFailedError):
        make_operator(fake_hook).execute(task_context(try_number=1))
    controller.script = SUCCESS
    result = make_operator(fake_hook, cleanup="keep").execute(task_context(try_number=2))
    assert result["job_name"].endswith("-2")
    assert len(jobs(kube)) == 2


def test_rerun_of_a_failed_try_reports_the_failure_without_rebuilding(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook
) -> None:
    controller.script = [start_pod(), run_pod(), finish_pod(exit_code=1, message="boom"), fail_job()]
    with pytest.raises(BuildFailedError):
        make_operator(fake_hook).execute(task_context(try_number=1))
    controller.script = SUCCESS
    with pytest.raises(BuildFailedError, match="boom"):
        make_operator(fake_hook).execute(task_context(try_number=1))
    assert len(jobs(kube)) == 1


def test_on_kill_deletes_job_pods_and_owned_secret(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_REG",
        json.dumps({"conn_type": "generic", "host": "r.example.com", "login": "u", "password": "p"}),
    )
    controller.script = [start_pod(), run_pod()]
    op = make_operator(fake_hook, registry_conn_id="reg", wait_for_completion=False)
    op.execute(task_context())
    controller.join()
    assert jobs(kube) and kube.list("pods", "default") and kube.list("secrets", "default")
    op.on_kill()
    assert jobs(kube) == [] and kube.list("pods", "default") == [] and kube.list("secrets", "default") == []


def test_watch_that_breaks_mid_build_is_resumed(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook
) -> None:
    def break_then_continue(k: FakeKube, ns: str, job: str) -> None:
        k.break_watches(ConnectionResetError("apiserver restarted"))

    def expire(k: FakeKube, ns: str, job: str) -> None:
        k.expire_watches()

    controller.script = [start_pod(), run_pod(), break_then_continue, expire, finish_pod(), complete_job()]
    result = make_operator(fake_hook).execute(task_context())
    assert result["digest"] == DIGEST


def test_deferrable_path_defers_to_trigger_and_completes(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller.script = SUCCESS
    op = make_operator(fake_hook, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(task_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, KanikoJobTrigger)
    monkeypatch.setattr(KanikoJobTrigger, "_hook", lambda self: fake_hook)

    async def first_event() -> Any:
        async for event in trigger.run():
            return event.payload

    payload = asyncio.run(first_event())
    assert payload["phase"] == "succeeded" and payload["digest"] == DIGEST
    result = op.execute_complete(task_context(), payload)
    assert result["digest"] == DIGEST


def test_execution_timeout_caps_the_job_deadline(fake_hook: FakeHook) -> None:
    from datetime import timedelta

    from airflow_kaniko.naming import BuildIdentity

    op = make_operator(fake_hook, execution_timeout=timedelta(minutes=10))
    rendered = op.render(BuildIdentity(dag_id="d", task_id="build", run_id="r"))
    assert rendered.job["spec"]["activeDeadlineSeconds"] == 600


def test_bad_input_fails_the_task_without_retries(fake_hook: FakeHook) -> None:
    from airflow_kaniko.version_compat import AirflowFailException

    with pytest.raises(AirflowFailException, match="'Bad_Namespace'"):
        make_operator(fake_hook, namespace="Bad_Namespace").execute(task_context())


def test_log_stream_error_is_reported_not_printed_as_kaniko_output(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse_logs(k: FakeKube, ns: str, job: str) -> None:
        k.log_errors[f"{job}-0"] = (400, 'no logs found for container "kaniko"')

    controller.script = [start_pod(), refuse_logs, run_pod(), finish_pod(), complete_job()]
    make_operator(fake_hook).execute(task_context())
    logged = capsys.readouterr().out
    assert "log stream ended: Kubernetes API answered 400: no logs found" in logged
