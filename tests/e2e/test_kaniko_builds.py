"""The rendered Job really builds and pushes: the real kaniko executor against a real registry.

Every build here goes through ``render_build`` (the Job the operator creates), runs the
``kaniko`` container of that Job in an isolated root (``tests/support/kaniko_runner.py``), and
is then checked against the registry with the project's own registry client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_kaniko.build import KanikoBuild
from airflow_kaniko.naming import LABEL_PREFIX
from airflow_kaniko.registry import DockerConfig, RegistryClient
from airflow_kaniko.status import BuildPhase, BuildStatus, build_status, parse_digest
from airflow_kaniko.verification import ProblemKind, Verdict, plan_verification, verify
from tests.e2e.helpers import BuildRun, RunBuild, run_rendered_build, write_context
from tests.support.kaniko_runner import pod_from_result
from tests.support.registry import RunningRegistry, free_port, registry_server, registry_unavailable_reason

pytestmark = pytest.mark.e2e


def _verify(
    registry: RunningRegistry, run: BuildRun, *, expected_labels: dict[str, str] | None = None
) -> Verdict:
    """The verification step: every destination against the digest of the termination message."""
    # What the build operator returns as XCom: the Job's destinations and the reported digest.
    annotations = run.rendered.job["metadata"]["annotations"]
    xcom = {
        "destinations": json.loads(annotations[f"{LABEL_PREFIX}/destinations"]),
        "digest": parse_digest(run.result.termination_message),
    }
    references, digest = plan_verification(build=xcom)
    credentials = DockerConfig.from_json(registry.docker_config_json(), source="test dockerconfigjson")
    with RegistryClient(credentials=credentials, ca_bundle=registry.ca_cert) as client:
        answers = client.inspect_all(references, platforms=True, labels=True)
    return verify(
        reported_digest=digest,
        answers=answers,
        expected_platforms=["linux/amd64"],
        expected_labels=expected_labels,
    )


def _finished(run: BuildRun) -> BuildStatus:
    """What the operator tells the user: the Job as the Job controller leaves it, and its pod."""
    job: dict[str, Any] = json.loads(json.dumps(run.rendered.job))
    ok = run.result.exit_code == 0
    condition = (
        {"type": "Complete", "status": "True"}
        if ok
        else {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
    )
    job["status"] = {"conditions": [condition], "succeeded" if ok else "failed": 1}
    return build_status(job, [pod_from_result(job, run.result)])


def _assert_no_secret(run: BuildRun, secret: str) -> None:
    status = _finished(run)
    for where, text in (
        ("log", run.result.log),
        ("termination message", run.result.termination_message),
        ("status message", status.message),
        ("Job manifest", json.dumps(run.rendered.job)),
        ("container env", json.dumps(run.result.env)),
        ("container argv", json.dumps(run.result.argv)),
    ):
        assert secret not in text, f"the registry password appears in the {where}"


def _tags(registry: RunningRegistry, repository: str) -> list[str]:
    assert registry.credentials is not None
    response = httpx.get(
        f"{registry.url}/v2/{repository}/tags/list", auth=registry.credentials, verify=str(registry.ca_cert)
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(response.json().get("tags") or [])


def test_scratch_build_pushes_every_destination_with_the_reported_digest(
    run_build: RunBuild, registry: RunningRegistry, tmp_path: Path
) -> None:
    context = write_context(
        tmp_path / "context",
        {
            "Dockerfile": "FROM scratch\nARG FLAVOUR\nCOPY app.txt /app.txt\nLABEL from.dockerfile=yes\n",
            "app.txt": "hello from the scratch image\n",
        },
    )
    destinations = [f"{registry.host}/team/scratch-app:1.0", f"{registry.host}/team/scratch-app:latest"]
    run = run_build(
        KanikoBuild(
            context="local:///replaced",
            destinations=destinations,
            build_args={"FLAVOUR": "plain"},
            labels={"org.opencontainers.image.source": "e2e", "team": "data"},
        ),
        context_dir=context,
    )

    assert run.result.exit_code == 0, run.log
    assert f"--destination={destinations[0]}" in run.args and f"--destination={destinations[1]}" in run.args
    digest = parse_digest(run.result.termination_message)
    assert digest is not None, run.result.termination_message
    status = _finished(run)
    assert (status.phase, status.digest) == (BuildPhase.SUCCEEDED, digest)

    verdict = _verify(
        registry,
        run,
        expected_labels={"org.opencontainers.image.source": "e2e", "team": "data", "from.dockerfile": "yes"},
    )
    assert verdict.ok, verdict.message
    assert verdict.digest == digest


def test_multi_stage_build_on_a_local_base_reuses_its_cache(
    run_build: RunBuild, registry: RunningRegistry, busybox_base: str, tmp_path: Path
) -> None:
    context = write_context(
        tmp_path / "context",
        {
            "Dockerfile": (
                "ARG BASE\n"
                "FROM ${BASE} AS builder\n"
                "ARG GREETING\n"
                'RUN mkdir -p /out && echo "$GREETING from stage one" > /out/greeting.txt\n'
                "FROM scratch\n"
                "COPY --from=builder /out/greeting.txt /greeting.txt\n"
            ),
        },
    )
    destination = f"{registry.host}/team/multi-stage:1"
    cache_repo = f"{registry.host}/cache/multi-stage"
    build = KanikoBuild(
        context="local:///replaced",
        destinations=[destination],
        build_args={"BASE": busybox_base, "GREETING": "hello"},
        labels={"stage": "final"},
        cache=True,
        cache_repo=cache_repo,
    )

    first = run_build(build, context_dir=context)
    assert first.result.exit_code == 0, first.log
    assert "Running: [/bin/sh -c mkdir -p /out && echo" in first.log  # text log format escapes the quotes
    assert f"--cache-repo={cache_repo}" in first.args
    assert "Using caching version of cmd" not in first.log
    assert _tags(registry, "cache/multi-stage"), "the first build pushed no layer to --cache-repo"
    first_verdict = _verify(registry, first, expected_labels={"stage": "final"})
    assert first_verdict.ok, first_verdict.message

    cache_tags = _tags(registry, "cache/multi-stage")
    second = run_build(build, context_dir=context)
    assert second.result.exit_code == 0, second.log
    assert "Using caching version of cmd: RUN mkdir -p /out" in second.log, second.log
    assert "Running: [/bin/sh -c mkdir -p /out" not in second.log  # the RUN did not run again
    assert _tags(registry, "cache/multi-stage") == cache_tags  # and pushed no new cache layer
    second_verdict = _verify(registry, second, expected_labels={"stage": "final"})
    assert second_verdict.ok, second_verdict.message
    assert second_verdict.digest == parse_digest(second.result.termination_message)


def test_run_exiting_3_reaches_the_user_with_its_exit_code_and_message(
    run_build: RunBuild, registry: RunningRegistry, busybox_base: str, tmp_path: Path
) -> None:
    context = write_context(
        tmp_path / "context",
        {
            "Dockerfile": (
                "ARG BASE\nFROM ${BASE}\n"
                'RUN echo "migration check failed: table users is missing" >&2 && exit 3\n'
            )
        },
    )
    run = run_build(
        KanikoBuild(
            context="local:///replaced",
            destinations=[f"{registry.host}/team/fails:1"],
            build_args={"BASE": busybox_base},
        ),
        context_dir=context,
    )

    assert run.result.exit_code == 3, run.log
    assert run.result.termination_log == ""  # no digest: the message falls back to the log
    status = _finished(run)
    assert status.phase is BuildPhase.FAILED
    assert status.exit_code == 3
    assert "kaniko exited with code 3" in status.message
    assert "migration check failed: table users is missing" in status.message
    assert "exit status 3" in status.message
    assert _tags(registry, "team/fails") == []


def test_wrong_registry_password_fails_clearly_without_leaking_it(
    run_build: RunBuild, registry: RunningRegistry, tmp_path: Path
) -> None:
    context = write_context(tmp_path / "context", {"Dockerfile": "FROM scratch\nLABEL a=b\n"})
    wrong = "wrong-password-4f9c2e"
    run = run_build(
        KanikoBuild(context="local:///replaced", destinations=[f"{registry.host}/team/denied:1"]),
        context_dir=context,
        docker_config_json=registry.docker_config_json(password=wrong),
    )

    assert run.result.exit_code != 0
    status = _finished(run)
    assert status.phase is BuildPhase.FAILED
    assert "error checking push permissions" in status.message
    assert "UNAUTHORIZED" in status.message or "authentication required" in status.message
    _assert_no_secret(run, wrong)
    assert registry.password is not None
    _assert_no_secret(run, registry.password)


def test_unreachable_registry_fails_with_the_connection_error(
    run_build: RunBuild, registry: RunningRegistry, tmp_path: Path
) -> None:
    context = write_context(tmp_path / "context", {"Dockerfile": "FROM scratch\nLABEL a=b\n"})
    unreachable = f"127.0.0.1:{free_port()}"
    run = run_build(
        KanikoBuild(context="local:///replaced", destinations=[f"{unreachable}/team/app:1"], push_retry=0),
        context_dir=context,
    )

    assert run.result.exit_code != 0
    status = _finished(run)
    assert status.phase is BuildPhase.FAILED
    assert unreachable in status.message
    assert "connection refused" in status.message


def test_dockerfile_missing_from_the_context(
    run_build: RunBuild, registry: RunningRegistry, tmp_path: Path
) -> None:
    """A context kaniko reads itself (a volume here; git or a bucket alike) without the Dockerfile.

    A ``local://`` context never gets this far: packing refuses it before anything is created.
    """
    context = write_context(tmp_path / "context", {"README.md": "no Dockerfile here\n"})
    run = run_build(
        KanikoBuild(context="local:///replaced", destinations=[f"{registry.host}/team/nodockerfile:1"]),
        context_dir=context,
        pvc_claim="build-sources",
    )

    assert run.result.exit_code != 0
    status = _finished(run)
    assert status.phase is BuildPhase.FAILED
    # The error is the log's first line; kaniko (cobra) prints its usage after it, and the
    # kubelet's fallback keeps only the last 2048 bytes, so the termination message is usage
    # text. The user sees the error in the streamed log, not in the failure message.
    assert "please provide a valid path to a Dockerfile within the build context" in run.log
    assert status.exit_code == 1


def test_a_reported_digest_is_no_proof_of_a_push(
    run_build: RunBuild, registry: RunningRegistry, tmp_path: Path
) -> None:
    """kaniko writes --digest-file before it pushes: only the registry can prove the push."""
    context = write_context(tmp_path / "context", {"Dockerfile": "FROM scratch\nLABEL pushed=no\n"})
    destination = f"{registry.host}/team/never-pushed:1"
    run = run_build(
        KanikoBuild(context="local:///replaced", destinations=[destination], push=False),
        context_dir=context,
    )

    assert run.result.exit_code == 0, run.log
    assert "--no-push" in run.args
    status = _finished(run)
    assert status.phase is BuildPhase.SUCCEEDED and status.digest is not None
    verdict = _verify(registry, run)
    assert not verdict.ok
    assert [p.kind for p in verdict.problems] == [ProblemKind.NOT_FOUND]
    assert "team/never-pushed" in verdict.message


def test_build_against_a_registry_with_token_auth(kaniko_executor: Path, tmp_path: Path) -> None:
    """Bearer tokens from a token service (as Harbor, GitLab or Docker Hub do), TLS as before."""
    reason = registry_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kaniko e2e tier: registry prerequisites: {reason}")
    context = write_context(
        tmp_path / "context",
        {"Dockerfile": "FROM scratch\nCOPY note.txt /note.txt\n", "note.txt": "token auth\n"},
    )
    with registry_server(tmp_path / "token-registry", auth="token", tls=True) as token_registry:
        destination = f"{token_registry.host}/team/token-app:1"
        run = run_rendered_build(
            KanikoBuild(context="local:///replaced", destinations=[destination]),
            executor=kaniko_executor,
            registry=token_registry,
            workdir=tmp_path,
            context_dir=context,
        )
        assert run.result.exit_code == 0, run.log
        verdict = _verify(token_registry, run)
        assert verdict.ok, verdict.message
        assert verdict.digest == parse_digest(run.result.termination_message)
        issuer = token_registry.token_issuer
        assert issuer is not None
        pushes = [
            scope
            for request in issuer.requests
            if request["accepted"] and request["user"] == token_registry.username
            for scope in request["scopes"]
            if scope.startswith("repository:team/token-app:") and "push" in scope.rsplit(":", 1)[1].split(",")
        ]
        assert pushes, issuer.requests  # kaniko got its push token from the token service
