"""dockerconfigjson documents for registry credentials. Pure; values never leave this format.

The returned text goes only into a Kubernetes Secret; never log it or put it in an XCom.
"""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

from airflow_kaniko.errors import InvalidInputError

__all__ = ["docker_config_json", "registry_host"]


def registry_host(text: str) -> str:
    """``https://ghcr.io/`` -> ``ghcr.io``; ``localhost:5000`` stays as it is."""
    value = text.strip()
    host = urlsplit(value).netloc if "://" in value else value.split("/", 1)[0]
    if not host:
        raise InvalidInputError(f"registry {text!r} has no host: expected e.g. ghcr.io or localhost:5000")
    return host


def docker_config_json(*, registry: str, username: str, password: str) -> str:
    """The ``.dockerconfigjson`` content kaniko reads from /kaniko/.docker/config.json."""
    host = registry_host(registry)
    # Docker Hub credentials live under the legacy index URL in docker's own config files.
    key = (
        "https://index.docker.io/v1/"
        if host in {"docker.io", "index.docker.io", "registry-1.docker.io"}
        else host
    )
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    return json.dumps({"auths": {key: {"username": username, "password": password, "auth": auth}}})
