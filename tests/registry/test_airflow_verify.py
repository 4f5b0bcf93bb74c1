"""KanikoVerifyOperator and RegistryImageSensor against a real registry, outside a scheduler."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import PokeReturnValue

from airflow_kaniko.errors import VerificationError
from airflow_kaniko.operators.verify import KanikoVerifyOperator
from airflow_kaniko.sensors.registry import RegistryImageSensor
from airflow_kaniko.version_compat import AirflowFailException
from tests.support.registry import OciImage, RunningRegistry, build_image, push_layout

Push = Callable[..., OciImage]


def _xcom(registry: RunningRegistry, image: OciImage, *tags: str) -> dict[str, Any]:
    destinations = [f"{registry.host}/{tag}" for tag in tags]
    return {
        "image": f"{destinations[0].rsplit(':', 1)[0]}@{image.digest}",
        "digest": image.digest,
        "destinations": destinations,
        "job_name": "kaniko-build-x",
        "namespace": "builds",
    }


def test_operator_verifies_every_destination_of_the_build_xcom(
    basic_registry: RunningRegistry, pushed_image: Push, tmp_path: Path
) -> None:
    image = pushed_image(basic_registry, "op/app:v1")
    push_layout(basic_registry, image, "op/app:latest")  # a second tag, as kaniko pushes them
    operator = KanikoVerifyOperator(
        task_id="verify",
        build=_xcom(basic_registry, image, "op/app:v1", "op/app:latest"),
        docker_config=str(basic_registry.write_docker_config(tmp_path / "config.json")),
        ca_bundle=str(basic_registry.ca_cert),
        expected_platforms=["linux/amd64"],
        expected_labels={"team": "data"},
    )
    result = operator.execute(context={})  # type: ignore[arg-type]
    assert result == {
        "image": f"{basic_registry.host}/op/app@{image.digest}",
        "digest": image.digest,
        "verified": [f"{basic_registry.host}/op/app:v1", f"{basic_registry.host}/op/app:latest"],
    }


def test_operator_digest_mismatch_raises_verification_error(
    anonymous_registry: RunningRegistry, pushed_image: Push
) -> None:
    image = pushed_image(anonymous_registry, "op/moved:v1")
    other = "sha256:" + "9" * 64
    operator = KanikoVerifyOperator(
        task_id="verify",
        references=[f"{anonymous_registry.host}/op/moved:v1"],
        digest=other,
        insecure_registries=[anonymous_registry.host],
    )
    with pytest.raises(VerificationError) as failure:
        operator.execute(context={})  # type: ignore[arg-type]
    assert image.digest in str(failure.value) and other in str(failure.value)


def test_operator_refused_credentials_fail_without_retries(
    basic_registry: RunningRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = f'{{"conn_type": "generic", "host": "{basic_registry.host}", "login": "builder", "password": "bad-pw-5678"}}'
    monkeypatch.setenv("AIRFLOW_CONN_TEST_REGISTRY", conn)
    operator = KanikoVerifyOperator(
        task_id="verify",
        references=f"{basic_registry.host}/op/app:v1",
        registry_conn_id="test_registry",
        insecure_registries=[basic_registry.host],
    )
    with pytest.raises(AirflowFailException) as failure:
        operator.execute(context={})  # type: ignore[arg-type]
    message = str(failure.value)
    assert basic_registry.host in message and "Airflow connection 'test_registry'" in message
    assert "bad-pw-5678" not in message


def test_operator_reads_the_dockerconfigjson_secret(
    basic_registry: RunningRegistry, pushed_image: Push, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = pushed_image(basic_registry, "op/secret:v1")
    secret = {
        "metadata": {"name": "registry-credentials", "namespace": "builds"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {
            ".dockerconfigjson": base64.b64encode(basic_registry.docker_config_json().encode()).decode()
        },
    }
    read: list[tuple[str, str]] = []

    class FakeCluster:
        def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
            read.append((namespace, name))
            return secret if (namespace, name) == ("builds", "registry-credentials") else None

    class FakeHook:
        def __init__(self, **kwargs: Any) -> None:
            pass

        def sync_cluster(self) -> FakeCluster:
            return FakeCluster()

    monkeypatch.setattr("airflow_kaniko.hooks.KanikoClusterHook", FakeHook)
    operator = KanikoVerifyOperator(
        task_id="verify",
        build=_xcom(basic_registry, image, "op/secret:v1"),
        docker_config_secret="registry-credentials",  # namespace comes from the build's XCom
        ca_bundle=str(basic_registry.ca_cert),
    )
    assert operator.execute(context={})["digest"] == image.digest  # type: ignore[arg-type]
    assert read == [("builds", "registry-credentials")]


def test_sensor_waits_until_the_tag_appears(token_registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image(tmp_path / "late", labels={"team": "data"})
    sensor = RegistryImageSensor(
        task_id="wait",
        references=[f"{token_registry.host}/sensor/app:v1"],
        digest=image.digest,
        docker_config=str(token_registry.write_docker_config(tmp_path / "config.json")),
        insecure_registries=[f"http://{token_registry.host}"],
    )
    assert sensor.mode == "reschedule"
    assert sensor.poke(context={}) is False  # type: ignore[arg-type]
    push_layout(token_registry, image, "sensor/app:v1")
    done = sensor.poke(context={})  # type: ignore[arg-type]
    assert isinstance(done, PokeReturnValue) and done.is_done
    assert done.xcom_value["digest"] == image.digest


def test_sensor_fails_at_once_on_refused_credentials(token_registry: RunningRegistry, tmp_path: Path) -> None:
    sensor = RegistryImageSensor(
        task_id="wait",
        references=[f"{token_registry.host}/sensor/app:v1"],
        docker_config=str(token_registry.write_docker_config(tmp_path / "c.json", password="nope-0000")),
        insecure_registries=[f"http://{token_registry.host}"],
    )
    with pytest.raises(AirflowFailException, match="token service"):
        sensor.poke(context={})  # type: ignore[arg-type]
