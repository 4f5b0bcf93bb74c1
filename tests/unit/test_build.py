"""The rendered Job: what the cluster will run, checked on plain data."""

from __future__ import annotations

import re
from typing import Any

import pytest

from airflow_kaniko.build import JobSettings, KanikoBuild, render_build
from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.naming import BuildIdentity, job_name

IDENTITY = BuildIdentity(
    dag_id="nightly_images", task_id="build_image", run_id="scheduled__2026-12-03T00:00:00+00:00"
)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def render(**build: Any) -> dict[str, Any]:
    settings = build.pop("settings", JobSettings())
    identity = build.pop("identity", IDENTITY)
    spec = {
        "context": "git://git.example.com/org/app.git#refs/heads/main",
        "destinations": ["reg.example.com/org/app:1"],
        **build,
    }
    return render_build(KanikoBuild(**spec), settings, identity).job


def kaniko(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_job_name_is_deterministic_per_task_instance_and_try() -> None:
    assert job_name(IDENTITY) == job_name(IDENTITY)
    other_run = BuildIdentity(dag_id="nightly_images", task_id="build_image", run_id="manual__x")
    mapped = BuildIdentity(
        dag_id="nightly_images", task_id="build_image", run_id=IDENTITY.run_id, map_index=3
    )
    second_try = BuildIdentity(
        dag_id="nightly_images", task_id="build_image", run_id=IDENTITY.run_id, try_number=2
    )
    names = {job_name(i) for i in (IDENTITY, other_run, mapped, second_try)}
    assert len(names) == 4


@pytest.mark.parametrize("task_id", ["x", "Build_Image.With.Dots", "a" * 250, "___", "group.sub_task-ÄÖ"])
def test_job_name_is_a_dns_label_at_most_63(task_id: str) -> None:
    name = job_name(
        BuildIdentity(dag_id="d" * 200, task_id=task_id, run_id="r" * 250, map_index=12, try_number=11)
    )
    assert len(name) <= 63 and DNS_LABEL.match(name)


@pytest.mark.parametrize("map_index", [-1, 0, 12])
def test_labels_are_valid_for_mapped_and_unmapped_tasks(map_index: int) -> None:
    job = render(identity=BuildIdentity(dag_id="dag", task_id="t", run_id="r", map_index=map_index))
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        for value in labels.values():
            assert len(value) <= 63 and LABEL_VALUE.match(value), value
    assert job["metadata"]["annotations"]["airflow-kaniko.io/map-index"] == str(map_index)


def test_labels_are_valid_and_annotations_carry_full_values() -> None:
    long_run = "manual__2026-12-03T10:00:00.123456+00:00_" + "x" * 80
    job = render(
        identity=BuildIdentity(dag_id="dag", task_id="t", run_id=long_run, map_index=2, try_number=3)
    )
    for value in job["metadata"]["labels"].values():
        assert len(value) <= 63 and LABEL_VALUE.match(value)
    ann = job["metadata"]["annotations"]
    assert ann["airflow-kaniko.io/run-id"] == long_run
    assert ann["airflow-kaniko.io/map-index"] == "2"
    assert ann["airflow-kaniko.io/try-number"] == "3"


def test_job_spec_essentials() -> None:
    job = render(
        settings=JobSettings(backoff_limit=4, active_deadline_seconds=900, ttl_seconds_after_finished=60)
    )
    spec = job["spec"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert (
        spec["backoffLimit"] == 4
        and spec["activeDeadlineSeconds"] == 900
        and spec["ttlSecondsAfterFinished"] == 60
    )
    assert spec["podFailurePolicy"]["rules"][0] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget"}],
    }
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = kaniko(job)
    assert container["securityContext"]["privileged"] is False
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert "--digest-file=/dev/termination-log" in container["args"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["image"].startswith("ghcr.io/osscontainertools/kaniko:v1.")


def test_args_carry_the_build() -> None:
    job = render(
        destinations=["reg.example.com/org/app:1", "reg.example.com/org/app:latest"],
        dockerfile="docker/Dockerfile.prod",
        build_args={"VERSION": "1.2.3", "EMPTY": ""},
        target="runtime",
        labels={"org.opencontainers.image.revision": "abc"},
        cache=True,
        cache_repo="reg.example.com/org/cache",
        extra_args=["--snapshot-mode=redo"],
    )
    args = kaniko(job)["args"]
    assert args.count("--destination=reg.example.com/org/app:1") == 1
    assert "--destination=reg.example.com/org/app:latest" in args
    assert "--dockerfile=docker/Dockerfile.prod" in args
    assert "--build-arg=VERSION=1.2.3" in args and "--build-arg=EMPTY=" in args
    assert "--target=runtime" in args
    assert "--label=org.opencontainers.image.revision=abc" in args
    assert "--cache=true" in args and "--cache-repo=reg.example.com/org/cache" in args
    assert args[-1] == "--snapshot-mode=redo"


def test_docker_config_secret_is_mounted_as_config_json() -> None:
    job = render(settings=JobSettings(docker_config_secret="regcred"))
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0]["secret"] == {
        "secretName": "regcred",
        "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }
    assert kaniko(job)["volumeMounts"][0]["mountPath"] == "/kaniko/.docker"
    assert "env" not in kaniko(job)


def test_git_secret_reaches_kaniko_through_secret_refs_only() -> None:
    job = render(settings=JobSettings(git_secret="git-creds"))
    env = {e["name"]: e for e in kaniko(job)["env"]}
    assert env["GIT_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "git-creds"
    assert all("value" not in e for e in env.values())


def test_pvc_and_local_contexts_mount_volumes() -> None:
    job = render(context="pvc://build-share/apps/web")
    assert "--context=dir:///kaniko/context-pvc/apps/web" in kaniko(job)["args"]
    assert (
        job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == "build-share"
    )
    job = render(context="local:///srv/app")
    assert any(a.startswith("--context=tar:///kaniko/context-archive/") for a in kaniko(job)["args"])
    assert job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"] == job["metadata"]["name"]


@pytest.mark.parametrize(
    ("build", "named"),
    [
        ({"destinations": []}, "destinations is empty"),
        ({"destinations": "reg.io/app:1"}, "not the string"),
        ({"destinations": ["reg.io/UPPER:1"]}, "'UPPER'"),
        ({"destinations": ["reg.io/app:" + "t" * 129]}, "invalid tag"),
        ({"destinations": ["reg.io/app:1", "reg.io/app:1"]}, "duplicates"),
        ({"build_args": {"A-B": "1"}}, "'A-B'"),
        ({"labels": {"-bad": "1"}}, "'-bad'"),
        ({"dockerfile": "../Dockerfile"}, "'../Dockerfile'"),
        ({"cache_repo": "reg.io/cache"}, "cache is off"),
        ({"context": "s3://b/ctx.zip"}, ".tar.gz"),
        ({"context": "pvc://Bad_Claim/x"}, "'Bad_Claim'"),
        ({"context": "pvc://claim/../etc"}, "'..'"),
        ({"context": "git://user:pw@host/org/repo.git"}, "credentials may not be written"),
        ({"extra_args": ["--digest-file=/tmp/x"]}, "--digest-file"),
        ({"settings": JobSettings(namespace="UPPER")}, "namespace 'UPPER'"),
        ({"settings": JobSettings(docker_config_secret="bad_name")}, "Secret name 'bad_name'"),
        ({"settings": JobSettings(resources={"limits": {"memory": "4 GB"}})}, "'4 GB'"),
        ({"settings": JobSettings(resources={"limits": {"gpu": "1"}})}, "'gpu'"),
        ({"settings": JobSettings(backoff_limit=-1)}, "backoff_limit"),
    ],
)
def test_bad_input_names_the_value(build: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        render(**build)
    assert named in str(err.value)
