"""RegistryClient against httpx.MockTransport: the I/O shell around the protocol functions."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable

import httpx

from airflow_kaniko.reference import parse_reference
from airflow_kaniko.registry import (
    Credentials,
    Outcome,
    RegistryClient,
    RetryPolicy,
    StaticCredentials,
)

SECRET = "hunter2-secret"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "c" * 64},
        "layers": [],
    }
).encode()
DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()
CONFIG = json.dumps({"os": "linux", "architecture": "arm64", "config": {"Labels": {"team": "data"}}}).encode()

Handler = Callable[[httpx.Request], httpx.Response]


def _client(handler: Handler, **kwargs: object) -> tuple[RegistryClient, list[httpx.Request], list[float]]:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    client = RegistryClient(transport=httpx.MockTransport(record), sleep=sleeps.append, **kwargs)  # type: ignore[arg-type]
    return client, seen, sleeps


def _registry(*, digest_header: bool = True, auth: str | None = None) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if (
            auth == "basic"
            and request.headers.get("Authorization")
            != "Basic " + base64.b64encode(f"bob:{SECRET}".encode()).decode()
        ):
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="reg"'})
        if path == "/v2/":
            return httpx.Response(200)
        if path == "/v2/team/app/manifests/v1":
            headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
            if digest_header:
                headers["Docker-Content-Digest"] = DIGEST
            return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else MANIFEST)
        if path == "/v2/team/app/blobs/sha256:" + "c" * 64:
            return httpx.Response(200, content=CONFIG)
        return httpx.Response(
            404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}
        )

    return handle


def test_head_with_oci_and_docker_types_in_accept_gives_the_digest() -> None:
    client, seen, _ = _client(_registry())
    answer = client.inspect(parse_reference("reg.example.com/team/app:v1"))
    assert answer.outcome is Outcome.FOUND and answer.digest == DIGEST and not answer.digest_from_body
    head = next(r for r in seen if r.method == "HEAD")
    assert str(head.url) == "https://reg.example.com/v2/team/app/manifests/v1"
    for media_type in (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ):
        assert media_type in head.headers["Accept"]
    assert [r.method for r in seen] == ["GET", "HEAD"]  # no GET of the manifest when HEAD suffices


def test_without_docker_content_digest_the_body_is_hashed() -> None:
    client, seen, _ = _client(_registry(digest_header=False))
    answer = client.inspect(parse_reference("reg.example.com/team/app:v1"))
    assert answer.digest == DIGEST and answer.digest_from_body
    assert [r.method for r in seen] == ["GET", "HEAD", "GET"]


def test_platform_and_labels_of_a_single_image_come_from_its_config() -> None:
    client, _, _ = _client(_registry())
    answer = client.inspect(parse_reference("reg.example.com/team/app:v1"), platforms=True, labels=True)
    assert answer.platforms == ("linux/arm64",)
    assert answer.configs is not None and dict(answer.configs[0].labels) == {"team": "data"}


def test_not_found_names_the_reference() -> None:
    client, _, _ = _client(_registry())
    answer = client.inspect(parse_reference("reg.example.com/team/app:v2"))
    assert answer.outcome is Outcome.NOT_FOUND
    assert "reg.example.com/team/app:v2" in answer.detail


def test_basic_auth_is_sent_after_the_challenge() -> None:
    creds = StaticCredentials(
        {"reg.example.com": Credentials(source="Airflow connection 'reg'", username="bob", password=SECRET)}
    )
    client, _, _ = _client(_registry(auth="basic"), credentials=creds)
    assert client.inspect(parse_reference("reg.example.com/team/app:v1")).outcome is Outcome.FOUND


def test_refused_basic_credentials_name_the_registry_and_source_not_the_secret() -> None:
    creds = StaticCredentials(
        {
            "reg.example.com": Credentials(
                source="Airflow connection 'reg'", username="bob", password="wrong-" + SECRET
            )
        }
    )
    client, seen, _ = _client(_registry(auth="basic"), credentials=creds)
    answer = client.inspect(parse_reference("reg.example.com/team/app:v1"))
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert "reg.example.com" in answer.detail and "Airflow connection 'reg'" in answer.detail
    assert SECRET not in answer.detail
    # The ping learned the Basic challenge: credentials go with the first HEAD, and a refusal is final.
    assert sum(r.method == "HEAD" for r in seen) == 1


def _docker_hub(token_status: int = 200) -> Handler:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.docker.io":
            if token_status != 200:
                return httpx.Response(token_status, json={"details": "incorrect username or password"})
            return httpx.Response(200, json={"access_token": "hub-token", "expires_in": 300})
        assert request.url.host == "registry-1.docker.io"
        challenge = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"'
        if request.url.path == "/v2/":
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        if request.headers.get("Authorization") != "Bearer hub-token":
            scope = 'scope="repository:library/alpine:pull"'
            return httpx.Response(401, headers={"WWW-Authenticate": f"{challenge},{scope}"})
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    return handle


def test_docker_hub_names_map_to_registry_1_and_the_token_carries_the_scope() -> None:
    client, seen, _ = _client(_docker_hub())
    answer = client.inspect(parse_reference("alpine:3.20"))
    assert answer.outcome is Outcome.FOUND and answer.digest == DIGEST
    token_request = next(r for r in seen if r.url.host == "auth.docker.io")
    assert token_request.url.params["service"] == "registry.docker.io"
    assert token_request.url.params["scope"] == "repository:library/alpine:pull"
    heads = [r for r in seen if r.method == "HEAD"]
    assert len(heads) == 1 and heads[0].url.path == "/v2/library/alpine/manifests/3.20"


def test_the_token_is_reused_for_the_same_repository() -> None:
    client, seen, _ = _client(_docker_hub())
    for _ in range(3):
        client.inspect(parse_reference("alpine:3.20"))
    assert sum(r.url.host == "auth.docker.io" for r in seen) == 1


def test_a_refused_token_request_is_unauthorized_naming_the_token_service() -> None:
    creds = StaticCredentials(
        {"docker.io": Credentials(source="docker config /cfg.json", username="u", password=SECRET)}
    )
    client, _, _ = _client(_docker_hub(token_status=401), credentials=creds)
    answer = client.inspect(parse_reference("alpine:3.20"))
    assert answer.outcome is Outcome.UNAUTHORIZED
    assert "docker.io" in answer.detail and "https://auth.docker.io/token" in answer.detail
    assert "docker config /cfg.json" in answer.detail and SECRET not in answer.detail


def test_429_and_503_are_retried_honouring_retry_after() -> None:
    faults = [httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(503)]

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD" and faults:
            return faults.pop(0)
        return _registry()(request)

    client, _, sleeps = _client(handle, retry=RetryPolicy(attempts=4, base_delay=0.25))
    answer = client.inspect(parse_reference("reg.example.com/team/app:v1"))
    assert answer.outcome is Outcome.FOUND
    assert sleeps == [2.0, 0.5]  # Retry-After first, then the backoff of the second attempt


def test_persistent_5xx_ends_as_an_error_answer_with_the_status() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200) if request.url.path == "/v2/" else httpx.Response(502)

    client, seen, sleeps = _client(handle, retry=RetryPolicy(attempts=3))
    answer = client.inspect(parse_reference("reg.example.com/team/app:v1"))
    assert answer.outcome is Outcome.ERROR and "502" in answer.detail
    assert sum(r.method == "HEAD" for r in seen) == 3 and len(sleeps) == 2


def test_timeouts_are_retried_then_reported_as_unreachable() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    client, seen, sleeps = _client(handle, retry=RetryPolicy(attempts=2))
    answer = client.inspect(parse_reference("reg.example.com/team/app:v1"))
    assert answer.outcome is Outcome.UNREACHABLE and "reg.example.com" in answer.detail
    assert len(seen) == 2 and len(sleeps) == 1


def test_insecure_registry_falls_back_from_https_to_http() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "https":
            raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number", request=request)
        return _registry()(request)

    client, seen, _ = _client(handle, insecure_registries=["reg.local:5000"])
    answer = client.inspect(parse_reference("reg.local:5000/team/app:v1"))
    assert answer.outcome is Outcome.FOUND
    assert seen[-1].url.scheme == "http"


def test_forbidden_is_denied() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200) if request.url.path == "/v2/" else httpx.Response(403)

    client, _, _ = _client(handle)
    answer = client.inspect(parse_reference("reg.example.com/team/app:v1"))
    assert answer.outcome is Outcome.DENIED and "reg.example.com" in answer.detail
