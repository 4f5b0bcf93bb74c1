"""Fixtures of the kaniko end-to-end tier: the real executor, a real registry, a base image.

The tier skips only when the executor cannot be built or run here, and says why. Everything
else (the registry, skopeo, busybox-static) is a prerequisite CI installs; when one is missing
the tier skips with the package to install.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.helpers import BUSYBOX, RunBuild, run_rendered_build, write_busybox_layout
from tests.support.kaniko_runner import (
    build_executor,
    kaniko_unavailable_reason,
)
from tests.support.registry import (
    RunningRegistry,
    push_layout,
    registry_unavailable_reason,
    start_registry,
)


@pytest.fixture(scope="session")
def kaniko_executor() -> Path:
    reason = kaniko_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kaniko e2e tier: {reason}")
    try:
        return build_executor()
    except Exception as exc:  # the skip message carries why the executor cannot be built here
        pytest.skip(f"kaniko e2e tier: the executor cannot be built here: {exc}")


@pytest.fixture(scope="session")
def e2e_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kaniko-e2e")


@pytest.fixture(scope="session")
def registry(e2e_dir: Path, kaniko_executor: Path) -> Iterator[RunningRegistry]:
    """docker-registry on loopback with htpasswd auth behind TLS from a throwaway CA."""
    reason = registry_unavailable_reason()
    if reason is not None:
        pytest.skip(f"kaniko e2e tier: registry prerequisites: {reason}")
    running = start_registry(e2e_dir / "registry", auth="basic", tls=True)
    try:
        yield running
    finally:
        running.stop()


# --- a base image made from Debian's busybox-static -------------------------------------------


@pytest.fixture(scope="session")
def busybox_base(registry: RunningRegistry, e2e_dir: Path) -> str:
    """``<registry>/base/busybox:1.35``, pushed once per session; returns the reference."""
    if not BUSYBOX.exists():
        pytest.skip("kaniko e2e tier: no /bin/busybox for the base image (apt-get install -y busybox-static)")
    image = write_busybox_layout(e2e_dir / "busybox-layout", tag="1.35")
    push_layout(registry, image, "base/busybox:1.35")
    return f"{registry.host}/base/busybox:1.35"


# --- running a build the way the operator would ------------------------------------------------


@pytest.fixture
def run_build(kaniko_executor: Path, registry: RunningRegistry, tmp_path: Path) -> RunBuild:
    """``run_rendered_build`` bound to this session's executor and registry."""
    return functools.partial(
        run_rendered_build, executor=kaniko_executor, registry=registry, workdir=tmp_path
    )
