"""The registry tier: Debian's docker-registry (distribution 2.8) on loopback, started per session.

Registries in every auth mode the client must handle: anonymous (plain HTTP), htpasswd
Basic (behind TLS from a throwaway CA), distribution token auth with the tests' own token
issuer (plain HTTP and TLS). Test images are pushed with skopeo from OCI layouts the tests
write. The tier skips only when docker-registry, skopeo or htpasswd are missing, and says
which package to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.registry import (
    OciImage,
    RunningRegistry,
    build_image,
    build_index,
    push_layout,
    registry_unavailable_reason,
    start_registry,
)

REGISTRY_DIR = Path(__file__).resolve().parent
LABELS = {"org.opencontainers.image.source": "https://example.com/app", "team": "data"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if REGISTRY_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.registry)


@pytest.fixture(scope="session")
def registry_prerequisites() -> None:
    reason = registry_unavailable_reason()
    if reason is not None:
        pytest.skip(f"registry tier: {reason}")


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry-tier")


def _start(registry_dir: Path, name: str, **kwargs: object) -> Iterator[RunningRegistry]:
    running = start_registry(registry_dir / name, **kwargs)  # type: ignore[arg-type]
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def anonymous_registry(registry_prerequisites: None, registry_dir: Path) -> Iterator[RunningRegistry]:
    """Plain HTTP, no auth."""
    yield from _start(registry_dir, "anonymous", auth="anonymous")


@pytest.fixture(scope="session")
def basic_registry(registry_prerequisites: None, registry_dir: Path) -> Iterator[RunningRegistry]:
    """htpasswd (bcrypt) Basic auth, HTTPS with a certificate from a throwaway CA."""
    yield from _start(registry_dir, "basic", auth="basic", tls=True)


@pytest.fixture(scope="session")
def token_registry(registry_prerequisites: None, registry_dir: Path) -> Iterator[RunningRegistry]:
    """distribution token auth, plain HTTP; the token issuer answers with ``token``."""
    yield from _start(
        registry_dir,
        "token",
        auth="token",
        token_options={"refresh_tokens": {"identity-token-for-builder": "builder"}},
    )


@pytest.fixture(scope="session")
def token_tls_registry(registry_prerequisites: None, registry_dir: Path) -> Iterator[RunningRegistry]:
    """distribution token auth, HTTPS; the token issuer answers with ``access_token`` only."""
    yield from _start(
        registry_dir, "token-tls", auth="token", tls=True, token_options={"token_field": "access_token"}
    )


@pytest.fixture
def pushed_image(tmp_path: Path) -> object:
    """``pushed_image(registry, "repo:tag", labels=...)`` -> the OciImage now in the registry."""

    def push(
        registry: RunningRegistry, destination: str, *, index: bool = False, **kwargs: object
    ) -> OciImage:
        layout = tmp_path / f"layout-{destination.replace('/', '_').replace(':', '_')}"
        image = (build_index if index else build_image)(layout, labels=LABELS, **kwargs)  # type: ignore[arg-type]
        digest = push_layout(registry, image, destination)
        assert digest == image.digest
        return image

    return push
