"""The registry client's protocol decisions, as plain functions: challenges, tokens, retries, names."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.registry import (
    Challenge,
    Credentials,
    Endpoint,
    RetryPolicy,
    api_host,
    choose_challenge,
    digest_of,
    endpoints_for,
    normalize_registry,
    parse_challenges,
    parse_manifest,
    parse_retry_after,
    parse_token_response,
    retry_delay,
    scope_for_path,
    token_request,
)


def test_bearer_challenge_keeps_commas_inside_quoted_scope() -> None:
    [challenge] = parse_challenges(
        [
            'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
            'scope="repository:team/app:pull,push",error="insufficient_scope"'
        ]
    )
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.example.com/token"
    assert challenge.service == "registry.example.com"
    assert challenge.scope == "repository:team/app:pull,push"
    assert challenge.error == "insufficient_scope"


def test_several_challenges_in_one_header_and_bearer_is_preferred() -> None:
    challenges = parse_challenges(
        ['Basic realm="Registry Realm", Bearer realm="https://a/token",service=reg']
    )
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert choose_challenge(challenges) == Challenge("bearer", {"realm": "https://a/token", "service": "reg"})


def test_basic_is_chosen_when_it_is_the_only_supported_scheme() -> None:
    assert choose_challenge(parse_challenges(["Negotiate", 'Basic realm="x"'])) == Challenge(
        "basic", {"realm": "x"}
    )
    assert choose_challenge(parse_challenges(["Negotiate"])) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("docker.io", "docker.io"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("registry-1.docker.io", "docker.io"),
        ("http://LOCALHOST:5000/some/path", "localhost:5000"),
        ("ghcr.io", "ghcr.io"),
    ],
)
def test_registry_names_compare_equal_however_written(text: str, expected: str) -> None:
    assert normalize_registry(text) == expected


def test_docker_hub_api_lives_on_registry_1() -> None:
    assert api_host("docker.io") == "registry-1.docker.io"
    assert api_host("ghcr.io") == "ghcr.io"


def test_pull_scope_comes_from_the_repository_in_the_path() -> None:
    assert scope_for_path("/v2/library/alpine/manifests/3.20") == "repository:library/alpine:pull"
    assert scope_for_path("/v2/a/b/c/blobs/sha256:00") == "repository:a/b/c:pull"
    assert scope_for_path("/v2/") is None


def test_token_request_with_user_and_password_is_a_get_with_basic() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example.com/token", "service": "reg"})
    creds = Credentials(source="test", username="bob", password="s3cret")
    request = token_request(challenge, scope="repository:team/app:pull", credentials=creds)
    assert request.method == "GET"
    assert request.url.params["service"] == "reg"
    assert request.url.params["scope"] == "repository:team/app:pull"
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:s3cret").decode()


def test_token_request_with_identity_token_is_an_oauth2_refresh_grant() -> None:
    challenge = Challenge("bearer", {"realm": "https://auth.example.com/token", "service": "reg"})
    creds = Credentials(source="test", identity_token="refresh-me")
    request = token_request(challenge, scope="repository:x:pull", credentials=creds)
    assert request.method == "POST"
    body = request.read().decode()
    assert "grant_type=refresh_token" in body and "refresh_token=refresh-me" in body
    assert "Authorization" not in request.headers


def test_anonymous_token_request_sends_no_authorization() -> None:
    challenge = Challenge(
        "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"}
    )
    request = token_request(challenge, scope="repository:library/alpine:pull", credentials=None)
    assert "Authorization" not in request.headers


def test_a_realm_that_is_not_a_url_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="realm"):
        token_request(Challenge("bearer", {"realm": "file:///etc/passwd"}), scope=None, credentials=None)


def test_token_or_access_token_and_a_lifetime_of_at_least_60_seconds() -> None:
    assert parse_token_response(b'{"token": "t1", "expires_in": 300}') == ("t1", 300.0)
    assert parse_token_response(b'{"access_token": "t2"}') == ("t2", 60.0)
    assert parse_token_response(b'{"token": "t3", "expires_in": 5}') == ("t3", 60.0)
    assert parse_token_response(b'{"nothing": 1}') is None
    assert parse_token_response(b"<html>") is None


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:05 GMT", now=now) == 5.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon") is None


def test_retry_honours_retry_after_and_otherwise_backs_off_exponentially() -> None:
    policy = RetryPolicy(attempts=4, base_delay=0.5, max_delay=30.0)
    assert retry_delay(policy, attempt=0, status=429, retry_after="7") == 7.0
    assert [retry_delay(policy, attempt=a, status=503) for a in range(3)] == [0.5, 1.0, 2.0]
    assert retry_delay(policy, attempt=0, status=None) == 0.5  # a timeout
    assert retry_delay(policy, attempt=0, status=503, retry_after="3600") == 30.0


def test_no_retry_for_answers_that_will_not_change_or_after_the_last_attempt() -> None:
    policy = RetryPolicy(attempts=3)
    assert retry_delay(policy, attempt=0, status=404) is None
    assert retry_delay(policy, attempt=0, status=401) is None
    assert retry_delay(policy, attempt=0, status=200) is None
    assert retry_delay(policy, attempt=2, status=503) is None


def test_tls_is_verified_unless_the_registry_is_marked_insecure() -> None:
    assert endpoints_for("ghcr.io", []) == [Endpoint("https", verify=True)]
    assert endpoints_for("ghcr.io", ["other:5000"]) == [Endpoint("https", verify=True)]
    assert endpoints_for("reg:5000", ["reg:5000"]) == [Endpoint("https", False), Endpoint("http", False)]
    assert endpoints_for("reg:5000", ["http://reg:5000"]) == [Endpoint("http", verify=False)]
    assert endpoints_for("reg:5000", ["https://reg:5000/"]) == [Endpoint("https", verify=False)]


def test_digest_of_a_body() -> None:
    assert digest_of(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert digest_of(b"", "sha512").startswith("sha512:cf83e135")


def test_an_index_lists_its_platforms_without_attestation_entries() -> None:
    body = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":['
        b'{"digest":"sha256:aa","platform":{"os":"linux","architecture":"amd64"}},'
        b'{"digest":"sha256:bb","platform":{"os":"linux","architecture":"arm64","variant":"v8"}},'
        b'{"digest":"sha256:cc","platform":{"os":"unknown","architecture":"unknown"}}]}'
    )
    parsed = parse_manifest(body)
    assert parsed.is_index
    assert parsed.children == (("sha256:aa", "linux/amd64"), ("sha256:bb", "linux/arm64/v8"))


def test_a_docker_manifest_names_its_config() -> None:
    body = (
        b'{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",'
        b'"config":{"digest":"sha256:cf"},"layers":[]}'
    )
    parsed = parse_manifest(body)
    assert not parsed.is_index
    assert parsed.config_digest == "sha256:cf"
