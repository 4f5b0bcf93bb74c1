"""The cluster tier: a real kube-apiserver, controller-manager, scheduler and etcd, kwok as nodes.

The session builds the binaries once (``scripts/build-control-plane.sh``, cached under
``~/.cache/airflow-kaniko``; a cold build takes minutes) and starts one control plane for the
whole session. Every test gets its own namespace. The tier is skipped only when the binaries
are not cached and Go, needed to build them, is missing.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.control_plane import (
    ControlPlane,
    ControlPlaneError,
    build_control_plane,
    go_missing_reason,
)

CLUSTER_DIR = Path(__file__).resolve().parent
_TIMINGS = pytest.StashKey[dict[str, float]]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.cluster)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    timings = config.stash.get(_TIMINGS, None)
    if timings:
        figures = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        terminalreporter.write_line(f"cluster tier control plane: {figures}")


@pytest.fixture(scope="session")
def control_plane_binaries() -> Path:
    """The directory with etcd, kube-apiserver, ... and kwok; builds them on a cold cache."""
    try:
        return build_control_plane()
    except ControlPlaneError as exc:
        reason = go_missing_reason()
        if reason is not None:
            pytest.skip(f"cluster tier skipped: {reason}, and no cached binaries ({exc})".splitlines()[0])
        raise


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest, control_plane_binaries: Path) -> Iterator[ControlPlane]:
    """One running control plane for the session (two kwok nodes)."""
    t0 = time.monotonic()
    cp = ControlPlane(control_plane_binaries, nodes=2)
    cp.start()
    timings = {"start": time.monotonic() - t0, **{f"start.{k}": v for k, v in cp.timings.items()}}
    request.config.stash[_TIMINGS] = timings
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    """Admin kubeconfig (client certificate in group system:masters)."""
    return control_plane.kubeconfig


@pytest.fixture
def airflow_kubernetes_connection(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch) -> str:
    """``AIRFLOW_CONN_KUBERNETES_DEFAULT`` pointing at the admin kubeconfig, namespace default."""
    value = control_plane.airflow_connection(namespace="default")
    monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", value)
    return value


@pytest.fixture(scope="session")
def k8s_client(control_plane: ControlPlane) -> Iterator[Any]:
    """A ``kubernetes.client.ApiClient`` for the admin user."""
    api = control_plane.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def core_v1(k8s_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(k8s_client)


@pytest.fixture
def batch_v1(k8s_client: Any) -> Any:
    from kubernetes import client

    return client.BatchV1Api(k8s_client)


@pytest.fixture
def namespace(request: pytest.FixtureRequest, control_plane: ControlPlane, k8s_client: Any) -> Iterator[str]:
    """A fresh namespace per test (its ``default`` ServiceAccount exists); deleted afterwards."""
    from kubernetes import client

    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base or 't'}-{uuid.uuid4().hex[:6]}"
    control_plane.create_namespace(name)
    try:
        yield name
    finally:
        # Deletion finishes in the background (namespace controller + kwok's pod-delete stage).
        client.CoreV1Api(k8s_client).delete_namespace(name)
