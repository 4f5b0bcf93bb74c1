"""docker-compose.yml, checked without a Docker engine: the compose spec, docker-compose's own
parser, and that everything the DAGs and the operator rely on is wired in."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
TASK_RUNNERS = ("airflow-scheduler", "airflow-triggerer", "airflow-apiserver", "airflow-dag-processor")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_matches_the_compose_spec() -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_docker_compose_parses_it() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "Debian's docker-compose is not installed (apt-get install -y docker-compose); .ci/run installs it"
        )
    done = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr


def test_stack_has_airflow_k3s_registry_and_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "registry", "k3s", "airflow-init", *TASK_RUNNERS} <= set(services)
    assert services["k3s"]["privileged"] is True
    assert services["k3s"]["image"].startswith("rancher/k3s:v1.")
    assert "latest" not in services["k3s"]["image"]


def test_every_task_runner_has_the_connection_and_variables_the_dags_read(compose: dict[str, Any]) -> None:
    settings = (ROOT / "dags" / "_settings.py").read_text()
    for name in TASK_RUNNERS:
        env = compose["services"][name]["environment"]
        assert "kube_config_path" in env["AIRFLOW_CONN_KUBERNETES_DEFAULT"]
        for variable in (
            "kaniko_registry",
            "kaniko_namespace",
            "kaniko_insecure_registries",
            "kaniko_extra_args",
        ):
            assert variable in settings
            assert f"AIRFLOW_VAR_{variable.upper()}" in env, (name, variable)
        assert any("/opt/airflow/dags" in v for v in compose["services"][name]["volumes"])


def test_pods_in_k3s_can_reach_the_registry_by_name(compose: dict[str, Any]) -> None:
    registry_ip = compose["services"]["registry"]["networks"]["stack"]["ipv4_address"]
    coredns = yaml.safe_load((ROOT / "compose" / "coredns-custom.yaml").read_text())
    assert registry_ip in next(iter(coredns["data"].values()))
    mirrors = yaml.safe_load((ROOT / "compose" / "registries.yaml").read_text())["mirrors"]
    assert mirrors["registry:5000"]["endpoint"] == ["http://registry:5000"]
    k3s_mounts = " ".join(compose["services"]["k3s"]["volumes"])
    assert "registries.yaml:/etc/rancher/k3s/registries.yaml" in k3s_mounts
    assert "coredns-custom.yaml:/var/lib/rancher/k3s/server/manifests/" in k3s_mounts
    # the compose subnet must not overlap k3s's pod and service networks
    subnet = compose["networks"]["stack"]["ipam"]["config"][0]["subnet"]
    assert not subnet.startswith(("10.42.", "10.43."))


def test_files_the_stack_mounts_exist(compose: dict[str, Any]) -> None:
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source
    assert (ROOT / compose["x-airflow-common"]["build"]["dockerfile"]).exists()
