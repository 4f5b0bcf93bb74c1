"""The trigger's contract with the triggerer, and the sensor's with a DAG."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from airflow_kaniko.errors import BuildFailedError
from airflow_kaniko.sensors.job import KanikoJobSensor
from airflow_kaniko.triggers import KanikoJobTrigger
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
)
from tests.unit.test_operator import make_operator


def test_trigger_serializes_its_full_path_and_every_argument() -> None:
    trigger = KanikoJobTrigger(
        job_name="kaniko-x-1", namespace="builds", kubernetes_conn_id="k8s", cluster_context="prod"
    )
    assert trigger.serialize() == (
        "airflow_kaniko.triggers.KanikoJobTrigger",
        {
            "job_name": "kaniko-x-1",
            "namespace": "builds",
            "kubernetes_conn_id": "k8s",
            "config_file": None,
            "cluster_context": "prod",
            "in_cluster": None,
            "unschedulable_seconds": 120.0,
            "container_creating_seconds": 300.0,
            "delete_on_kill": True,
        },
    )
    classpath, kwargs = trigger.serialize()
    assert KanikoJobTrigger(**kwargs, poll_interval=10).serialize() == (
        classpath,
        kwargs,
    )  # older arguments accepted


def submit(fake_hook: FakeHook, controller: Controller, script: list[Any]) -> dict[str, Any]:
    controller.script = script
    result = make_operator(fake_hook, wait_for_completion=False, cleanup="keep").execute(task_context())
    return result


def run_trigger(trigger: KanikoJobTrigger) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout=20))


def test_trigger_reports_failure_with_reason(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitted = submit(
        fake_hook,
        controller,
        [start_pod(), run_pod(), finish_pod(exit_code=3, message="RUN exit 3"), fail_job()],
    )
    monkeypatch.setattr(KanikoJobTrigger, "_hook", lambda self: fake_hook)
    payload = run_trigger(KanikoJobTrigger(job_name=submitted["job_name"], namespace="default"))
    assert (
        payload["phase"] == "failed"
        and payload["reason"] == "BackoffLimitExceeded"
        and payload["exit_code"] == 3
    )


def test_trigger_requests_do_not_grow_with_build_length(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    def idle(k: FakeKube, ns: str, job: str) -> None:
        import time

        time.sleep(0.3)

    submitted = submit(
        fake_hook,
        controller,
        [start_pod(), run_pod(), *[idle] * 5, finish_pod(), *[idle] * 5, complete_job()],
    )
    monkeypatch.setattr(KanikoJobTrigger, "_hook", lambda self: fake_hook)
    payload = run_trigger(KanikoJobTrigger(job_name=submitted["job_name"], namespace="default"))
    assert payload["digest"] == DIGEST
    # the shared namespace watch: two lists and two watches; the build: one read of its Job and
    # pods. Whatever the build's length.
    assert fake_hook.async_clusters[-1].requests_sent == 6


def test_trigger_on_kill_deletes_the_job(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    submitted = submit(fake_hook, controller, [start_pod(), run_pod()])
    controller.join()
    monkeypatch.setattr(KanikoJobTrigger, "_hook", lambda self: fake_hook)
    asyncio.run(KanikoJobTrigger(job_name=submitted["job_name"], namespace="default").on_kill())
    assert kube.list("jobs", "default") == [] and kube.list("pods", "default") == []


def make_sensor(fake_hook: FakeHook, job_name: str, **kwargs: Any) -> KanikoJobSensor:
    sensor = KanikoJobSensor(task_id="wait", job_name=job_name, **kwargs)
    sensor.__dict__["hook"] = fake_hook
    return sensor


def test_sensor_returns_the_build_xcom(kube: FakeKube, controller: Controller, fake_hook: FakeHook) -> None:
    submitted = submit(fake_hook, controller, SUCCESS)
    controller.join()
    result = make_sensor(fake_hook, submitted["job_name"]).poke(task_context())
    assert not isinstance(result, bool)
    assert result.xcom_value["digest"] == DIGEST
    assert result.xcom_value["destinations"] == submitted["destinations"]


def test_sensor_waits_while_running_and_fails_fast_on_failure(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook
) -> None:
    submitted = submit(fake_hook, controller, [start_pod(), run_pod()])
    controller.join()
    sensor = make_sensor(fake_hook, submitted["job_name"])
    assert sensor.poke(task_context()) is False
    finish_pod(exit_code=2, message="bad Dockerfile")(kube, "default", submitted["job_name"])
    fail_job()(kube, "default", submitted["job_name"])
    with pytest.raises(BuildFailedError, match="bad Dockerfile"):
        sensor.poke(task_context())


def test_concurrent_triggers_share_one_watch_per_namespace(
    kube: FakeKube, controller: Controller, fake_hook: FakeHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    controller.script = [start_pod(), run_pod()]
    names = []
    for task_id in ("build_a", "build_b", "build_c"):
        op = make_operator(fake_hook, task_id=task_id, wait_for_completion=False, cleanup="keep")
        names.append(op.execute(task_context(task_id=task_id))["job_name"])
    controller.join()
    monkeypatch.setattr(KanikoJobTrigger, "_hook", lambda self: fake_hook)

    async def all_three() -> list[dict[str, Any]]:
        async def first(trigger: KanikoJobTrigger) -> dict[str, Any]:
            async for event in trigger.run():
                return dict(event.payload)
            raise AssertionError("no event")

        waiting = [
            asyncio.create_task(first(KanikoJobTrigger(job_name=n, namespace="default"))) for n in names
        ]
        await asyncio.sleep(0.3)
        for name in names:  # finish them one after the other, while all three wait
            await asyncio.to_thread(finish_pod(), kube, "default", name)
            await asyncio.to_thread(complete_job(), kube, "default", name)
        return await asyncio.wait_for(asyncio.gather(*waiting), timeout=20)

    payloads = asyncio.run(all_three())
    assert [p["job_name"] for p in payloads] == names
    assert all(p["phase"] == "succeeded" and p["digest"] == DIGEST for p in payloads)
    assert len(fake_hook.async_clusters) == 1  # one client, one pair of watches
    assert sum(1 for method, _ in kube.requests if method == "WATCH") == 2
