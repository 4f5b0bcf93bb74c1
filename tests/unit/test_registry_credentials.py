"""Where registry credentials come from, and that their values never show."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.registry import (
    Credentials,
    DockerConfig,
    StaticCredentials,
    chain_credentials,
    credentials_from_helper_output,
)

SECRET = "pa55-w0rd-never-shown"


def _auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_auths_entry_by_host_and_docker_hub_legacy_key() -> None:
    config = DockerConfig.from_json(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": _auth("hubuser", SECRET)},
                    "reg.example.com:5000": {"username": "u", "password": SECRET},
                }
            }
        ),
        source="test config",
    )
    hub = config("docker.io")
    assert hub is not None and (hub.username, hub.password) == ("hubuser", SECRET)
    other = config("reg.example.com:5000")
    assert other is not None and other.username == "u"
    assert config("ghcr.io") is None


def test_identity_and_registry_tokens_are_read() -> None:
    config = DockerConfig(
        {"auths": {"a.io": {"identitytoken": "refresh"}, "b.io": {"registrytoken": "bearer"}}}, source="t"
    )
    a, b = config("a.io"), config("b.io")
    assert a is not None and a.identity_token == "refresh"
    assert b is not None and b.registry_token == "bearer"


def test_legacy_dockercfg_without_auths_wrapper() -> None:
    config = DockerConfig({"reg.io": {"auth": _auth("u", SECRET)}}, source="t")
    found = config("reg.io")
    assert found is not None and found.password == SECRET


def test_cred_helper_is_used_when_its_binary_exists() -> None:
    asked: list[tuple[str, str]] = []

    def run_helper(helper: str, server: str) -> str:
        asked.append((helper, server))
        return json.dumps({"ServerURL": server, "Username": "from-helper", "Secret": SECRET})

    config = DockerConfig(
        {"auths": {"gcr.io": {"auth": _auth("from-auths", "x")}}, "credHelpers": {"gcr.io": "gcloud"}},
        source="t",
        run_helper=run_helper,
        helper_available=lambda helper: True,
    )
    found = config("gcr.io")
    assert found is not None and found.username == "from-helper"
    assert found.source == "credential helper docker-credential-gcloud"
    assert asked == [("gcloud", "gcr.io")]


def test_docker_hub_is_asked_of_a_helper_by_its_legacy_url() -> None:
    asked: list[str] = []
    config = DockerConfig(
        {"credsStore": "desktop"},
        source="t",
        run_helper=lambda helper, server: asked.append(server) or None,
        helper_available=lambda helper: True,
    )
    assert config("docker.io") is None
    assert asked == ["https://index.docker.io/v1/"]


def test_missing_helper_binary_falls_back_to_auths_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    config = DockerConfig(
        {"auths": {"gcr.io": {"auth": _auth("from-auths", SECRET)}}, "credHelpers": {"gcr.io": "nosuch"}},
        source="test config",
        helper_available=lambda helper: False,
    )
    with caplog.at_level(logging.WARNING):
        found = config("gcr.io")
    assert found is not None and found.username == "from-auths"
    assert "docker-credential-nosuch" in caplog.text
    assert SECRET not in caplog.text


def test_helper_token_user_means_identity_token() -> None:
    found = credentials_from_helper_output('{"Username": "<token>", "Secret": "tok"}', helper="h")
    assert found is not None and found.identity_token == "tok" and found.username is None
    assert credentials_from_helper_output("credentials not found", helper="h") is None


def test_invalid_config_errors_never_quote_the_content() -> None:
    with pytest.raises(InvalidInputError) as not_json:
        DockerConfig.from_json('{"auths": {"r": {"password": "' + SECRET + '"', source="Secret ns/creds")
    assert "Secret ns/creds" in str(not_json.value) and SECRET not in str(not_json.value)
    config = DockerConfig(
        {"auths": {"r.io": {"auth": base64.b64encode(SECRET.encode()).decode()}}}, source="t"
    )
    with pytest.raises(InvalidInputError) as bad_auth:
        config("r.io")
    assert SECRET not in str(bad_auth.value)


def test_credentials_repr_hides_secrets() -> None:
    creds = Credentials(
        source="s", username="u", password=SECRET, identity_token=SECRET, registry_token=SECRET
    )
    assert SECRET not in repr(creds)


def test_static_and_chained_sources() -> None:
    conn = StaticCredentials(
        {"https://ghcr.io/": Credentials(source="Airflow connection 'ghcr'", username="a")}
    )
    file = DockerConfig(
        {"auths": {"ghcr.io": {"auth": _auth("b", "x")}, "quay.io": {"auth": _auth("c", "y")}}}, source="f"
    )
    lookup = chain_credentials(conn, None, file)
    first, second = lookup("ghcr.io"), lookup("quay.io")
    assert first is not None and first.username == "a"
    assert second is not None and second.username == "c"
    assert lookup("docker.io") is None


def test_unreadable_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"nope\.json"):
        DockerConfig.from_file(f"{tmp_path}/nope.json")
