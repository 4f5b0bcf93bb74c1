"""The Airflow adapters' own plumbing: the Secret's dockerconfigjson, arguments, template fields."""

from __future__ import annotations

import base64

import pytest

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.operators.verify import KanikoVerifyOperator, docker_config_from_secret
from airflow_kaniko.sensors.registry import RegistryImageSensor

CONFIG = '{"auths": {"reg.io": {"auth": "dTpzZWNyZXQtdmFsdWU="}}}'


def test_secret_data_is_decoded() -> None:
    secret = {"data": {".dockerconfigjson": base64.b64encode(CONFIG.encode()).decode()}}
    assert docker_config_from_secret(secret, name="creds", namespace="builds") == CONFIG


def test_missing_or_wrong_secret_names_it_without_its_content() -> None:
    with pytest.raises(InvalidInputError, match="builds/creds does not exist"):
        docker_config_from_secret(None, name="creds", namespace="builds")
    with pytest.raises(InvalidInputError, match=r"kubernetes\.io/dockerconfigjson"):
        docker_config_from_secret({"data": {"token": "eA=="}}, name="creds", namespace="builds")
    with pytest.raises(InvalidInputError) as bad:
        docker_config_from_secret(
            {"data": {".dockerconfigjson": "secret-value!"}}, name="creds", namespace="builds"
        )
    assert "secret-value" not in str(bad.value)


def test_something_to_verify_is_required() -> None:
    with pytest.raises(InvalidInputError, match="build"):
        KanikoVerifyOperator(task_id="verify")


def test_xcom_and_references_are_template_fields_and_the_sensor_reschedules() -> None:
    operator = KanikoVerifyOperator(task_id="verify", build="{{ ti.xcom_pull('build') }}")
    assert {"build", "references", "digest", "expected_labels"} <= set(operator.template_fields)
    sensor = RegistryImageSensor(task_id="wait", references=["reg.io/app:1"])
    assert sensor.mode == "reschedule"
    assert RegistryImageSensor(task_id="poke", references=["reg.io/app:1"], mode="poke").mode == "poke"
