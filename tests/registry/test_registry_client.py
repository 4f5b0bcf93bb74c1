"""The registry client against a real docker-registry in every auth mode, plain HTTP and TLS."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_kaniko.reference import parse_reference
from airflow_kaniko.registry import DockerConfig, Outcome, RegistryClient, RetryPolicy
from airflow_kaniko.verification import verify
from tests.support.registry import Fault, HeaderStrippingProxy, OciImage, RunningRegistry

Push = Callable[..., OciImage]


def _client(registry: RunningRegistry, **kwargs: object) -> RegistryClient:
    kwargs.setdefault(
        "credentials", DockerConfig.from_json(registry.docker_config_json(), source="test config")
    )
    if registry.tls:
        kwargs.setdefault("ca_bundle", registry.ca_cert)
    else:
        kwargs.setdefault("insecure_registries", [f"http://{registry.host}"])
    return RegistryClient(**kwargs)  # type: ignore[arg-type]


def test_anonymous_registry_single_image(anonymous_registry: RunningRegistry, pushed_image: Push) -> None:
    image = pushed_image(anonymous_registry, "team/app:v1")
    with _client(anonymous_registry) as client:
        answer = client.inspect(parse_reference(f"{anonymous_registry.host}/team/app:v1"))
    assert answer.outcome is Outcome.FOUND and answer.digest == image.digest
    assert not answer.digest_from_body


def test_index_platforms_and_labels(token_registry: RunningRegistry, pushed_image: Push) -> None:
    image = pushed_image(
        token_registry, "team/multi:v1", index=True, platforms=("linux/amd64", "linux/arm64/v8")
    )
    reference = parse_reference(f"{token_registry.host}/team/multi:v1")
    with _client(token_registry) as client:
        answer = client.inspect(reference, platforms=True, labels=True)
    assert answer.digest == image.digest
    assert answer.platforms == ("linux/amd64", "linux/arm64/v8")
    verdict = verify(
        reported_digest=image.digest,
        answers=[answer],
        expected_platforms=["linux/amd64", "linux/arm64"],
        expected_labels={"team": "data"},
    )
    assert verdict.ok, verdict.message
    wrong = verify(reported_digest=image.digest, answers=[answer], expected_labels={"team": "web"})
    assert "'data'" in wrong.message and "'web'" in wrong.message


def test_digest_reference_and_a_tag_pointing_elsewhere(
    anonymous_registry: RunningRegistry, pushed_image: Push
) -> None:
    first = pushed_image(anonymous_registry, "team/moving:v1")
    second = pushed_image(anonymous_registry, "team/moving:v1")  # the tag moves on
    with _client(anonymous_registry) as client:
        by_digest = client.inspect(parse_reference(f"{anonymous_registry.host}/team/moving@{first.digest}"))
        by_tag = client.inspect(parse_reference(f"{anonymous_registry.host}/team/moving:v1"))
    assert by_digest.digest == first.digest
    verdict = verify(reported_digest=first.digest, answers=[by_tag])
    assert first.digest in verdict.message and second.digest in verdict.message


def test_not_found_names_the_reference(anonymous_registry: RunningRegistry) -> None:
    with _client(anonymous_registry) as client:
        missing_tag = client.inspect(parse_reference(f"{anonymous_registry.host}/team/nothing:v9"))
    assert missing_tag.outcome is Outcome.NOT_FOUND
    assert f"{anonymous_registry.host}/team/nothing:v9" in missing_tag.detail


def test_basic_auth_over_tls_with_the_test_ca(basic_registry: RunningRegistry, pushed_image: Push) -> None:
    image = pushed_image(basic_registry, "team/app:v1")
    with _client(basic_registry) as client:
        answer = client.inspect(parse_reference(f"{basic_registry.host}/team/app:v1"))
    assert answer.digest == image.digest


def test_wrong_password_names_the_registry_never_the_password(basic_registry: RunningRegistry) -> None:
    wrong = "not-the-" + (basic_registry.password or "")
    credentials = DockerConfig.from_json(
        basic_registry.docker_config_json(password=wrong), source="docker config test.json"
    )
    with _client(basic_registry, credentials=credentials) as client:
        answer = client.inspect(parse_reference(f"{basic_registry.host}/team/app:v1"))
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert basic_registry.host in answer.detail and "docker config test.json" in answer.detail
    assert wrong not in answer.detail and (basic_registry.password or "") not in answer.detail


def test_no_credentials_at_all_is_unauthorized(basic_registry: RunningRegistry) -> None:
    with _client(basic_registry, credentials=None) as client:
        answer = client.inspect(parse_reference(f"{basic_registry.host}/team/app:v1"))
    assert answer.outcome is Outcome.UNAUTHORIZED and "without credentials" in answer.detail


def test_untrusted_certificate_is_a_tls_error_unless_marked_insecure(
    basic_registry: RunningRegistry, pushed_image: Push
) -> None:
    image = pushed_image(basic_registry, "team/tls:v1")
    reference = parse_reference(f"{basic_registry.host}/team/tls:v1")
    with _client(basic_registry, ca_bundle=None) as client:
        untrusted = client.inspect(reference)
    assert untrusted.outcome is Outcome.TLS and basic_registry.host in untrusted.detail
    with _client(basic_registry, ca_bundle=None, insecure_registries=[basic_registry.host]) as client:
        assert client.inspect(reference).digest == image.digest


def test_plain_http_registry_needs_to_be_marked_insecure(
    anonymous_registry: RunningRegistry, pushed_image: Push
) -> None:
    image = pushed_image(anonymous_registry, "team/plain:v1")
    reference = parse_reference(f"{anonymous_registry.host}/team/plain:v1")
    with RegistryClient() as client:
        assert client.inspect(reference).outcome is Outcome.TLS
    with RegistryClient(insecure_registries=[anonymous_registry.host]) as client:  # https first, then http
        assert client.inspect(reference).digest == image.digest


def test_bearer_token_flow_asks_for_the_pull_scope(
    token_registry: RunningRegistry, pushed_image: Push
) -> None:
    image = pushed_image(token_registry, "team/scoped:v1")
    issuer = token_registry.token_issuer
    assert issuer is not None
    before = len(issuer.requests)
    with _client(token_registry) as client:
        answer = client.inspect(parse_reference(f"{token_registry.host}/team/scoped:v1"))
    assert answer.digest == image.digest
    asked = issuer.requests[before:]
    assert asked and all(r["user"] == token_registry.username for r in asked)
    assert ["repository:team/scoped:pull"] in [r["scopes"] for r in asked]


def test_bearer_with_access_token_only_over_tls(
    token_tls_registry: RunningRegistry, pushed_image: Push
) -> None:
    image = pushed_image(token_tls_registry, "team/app:v1")
    with _client(token_tls_registry) as client:
        assert (
            client.inspect(parse_reference(f"{token_tls_registry.host}/team/app:v1")).digest == image.digest
        )


def test_identity_token_uses_the_oauth2_refresh_grant(
    token_registry: RunningRegistry, pushed_image: Push
) -> None:
    image = pushed_image(token_registry, "team/oauth:v1")
    config = {"auths": {token_registry.host: {"identitytoken": "identity-token-for-builder"}}}
    credentials = DockerConfig(config, source="test config")
    with _client(token_registry, credentials=credentials) as client:
        assert client.inspect(parse_reference(f"{token_registry.host}/team/oauth:v1")).digest == image.digest
    assert token_registry.token_issuer is not None
    assert token_registry.token_issuer.requests[-1]["grant_type"] == "refresh_token"


def test_token_service_refusing_the_password(token_registry: RunningRegistry) -> None:
    credentials = DockerConfig.from_json(
        token_registry.docker_config_json(password="wrong-pw-1234"), source="test config"
    )
    with _client(token_registry, credentials=credentials) as client:
        answer = client.inspect(parse_reference(f"{token_registry.host}/team/app:v1"))
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert token_registry.host in answer.detail and "token service" in answer.detail
    assert "wrong-pw-1234" not in answer.detail


def test_credential_helper_on_path(
    basic_registry: RunningRegistry, pushed_image: Push, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = pushed_image(basic_registry, "team/helper:v1")
    helper = tmp_path / "bin" / "docker-credential-airflowtest"
    helper.parent.mkdir()
    helper.write_text(
        "#!/bin/sh\n"
        '[ "$1" = get ] || exit 1\n'
        "read server\n"
        f'[ "$server" = "{basic_registry.host}" ] || {{ echo "credentials not found in native keychain"; exit 1; }}\n'
        f'echo \'{{"ServerURL": "\'$server\'", "Username": "{basic_registry.username}", '
        f'"Secret": "{basic_registry.password}"}}\'\n'
    )
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    config = DockerConfig(basic_registry.docker_config(cred_helper="airflowtest"), source="test config")
    with _client(basic_registry, credentials=config) as client:
        assert client.inspect(parse_reference(f"{basic_registry.host}/team/helper:v1")).digest == image.digest


def test_missing_docker_content_digest_is_computed_from_the_body(
    anonymous_registry: RunningRegistry, pushed_image: Push
) -> None:
    image = pushed_image(anonymous_registry, "team/nodigest:v1", index=True)
    with HeaderStrippingProxy(anonymous_registry.url) as proxy:
        with RegistryClient(insecure_registries=[f"http://{proxy.host}"]) as client:
            answer = client.inspect(parse_reference(f"{proxy.host}/team/nodigest:v1"))
        assert ("GET", "/v2/team/nodigest/manifests/v1", 200) in proxy.seen
    assert answer.digest == image.digest and answer.digest_from_body
    assert verify(reported_digest=image.digest, answers=[answer]).ok


def test_retry_after_429_and_503_then_success(
    anonymous_registry: RunningRegistry, pushed_image: Push
) -> None:
    image = pushed_image(anonymous_registry, "team/flaky:v1")
    faults = [Fault(429, {"Retry-After": "0"}), Fault(503, {"Retry-After": "0"})]
    sleeps: list[float] = []
    with HeaderStrippingProxy(anonymous_registry.url, strip_headers=(), faults=faults) as proxy:
        with RegistryClient(insecure_registries=[f"http://{proxy.host}"], sleep=sleeps.append) as client:
            answer = client.inspect(parse_reference(f"{proxy.host}/team/flaky:v1"))
        statuses = [status for _, _, status in proxy.seen]
    assert answer.digest == image.digest
    assert statuses[:2] == [429, 503] and sleeps == [0.0, 0.0]


def test_a_registry_that_keeps_failing_is_an_error_answer(anonymous_registry: RunningRegistry) -> None:
    faults = [Fault(503)] * 10
    with (
        HeaderStrippingProxy(anonymous_registry.url, faults=faults) as proxy,
        RegistryClient(
            insecure_registries=[f"http://{proxy.host}"], retry=RetryPolicy(attempts=2), sleep=lambda _: None
        ) as client,
    ):
        answer = client.inspect(parse_reference(f"{proxy.host}/team/app:v1"))
    assert answer.outcome is Outcome.ERROR and "503" in answer.detail
