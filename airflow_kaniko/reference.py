"""OCI image references, parsed and validated with the distribution grammar.

Grammar: github.com/distribution/reference (reference.go, normalize.go). Docker Hub names
are normalised the way docker does (``alpine`` -> ``docker.io/library/alpine``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from airflow_kaniko.errors import InvalidInputError

__all__ = ["DOCKER_HUB", "ImageReference", "parse_reference"]

DOCKER_HUB = "docker.io"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_NAME_MAX = 255
_ALLOWED = (
    "expected [registry[:port]/]path[:tag][@digest] with a lowercase path of components "
    "[a-z0-9] joined by '.', '_', '__' or '-', a tag matching [\\w][\\w.-]{0,127} "
    "and a digest like sha256:<64 hex>"
)


@dataclass(frozen=True, kw_only=True)
class ImageReference:
    """A parsed reference. ``registry`` is normalised (docker.io for Docker Hub)."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def ref(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest if any, else the tag."""
        return self.digest or self.tag or "latest"

    def with_digest(self, digest: str) -> ImageReference:
        return ImageReference(registry=self.registry, repository=self.repository, digest=digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DOCKER_HUB, name


def parse_reference(text: str, *, what: str = "image reference", allow_digest: bool = True) -> ImageReference:
    """Parse ``text``; raise InvalidInputError naming it and the grammar when it is not a reference."""
    if not isinstance(text, str) or not text or text != text.strip():
        raise InvalidInputError(f"{what} {text!r} is not valid: {_ALLOWED}")
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST.match(digest):
        raise InvalidInputError(f"{what} {text!r} has an invalid digest {digest!r}: expected sha256:<64 hex>")
    if digest and not allow_digest:
        raise InvalidInputError(
            f"{what} {text!r} contains a digest; a push destination takes a tag only, "
            "the registry assigns the digest"
        )
    tag: str | None = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG.match(tag):
            raise InvalidInputError(
                f"{what} {text!r} has an invalid tag {tag!r}: allowed is [\\w][\\w.-]{{0,127}}"
            )
    registry, path = _split_domain(remainder)
    if not _DOMAIN.match(registry):
        raise InvalidInputError(f"{what} {text!r} has an invalid registry host {registry!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    components = path.split("/")
    bad = next((c for c in components if not _PATH_COMPONENT.match(c)), None)
    if bad is not None:
        raise InvalidInputError(
            f"{what} {text!r} has an invalid repository component {bad!r}: "
            "allowed are lowercase [a-z0-9] joined by '.', '_', '__' or '-'"
        )
    if len(f"{registry}/{path}") > _NAME_MAX:
        raise InvalidInputError(f"{what} {text!r} is longer than {_NAME_MAX} characters")
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest or None)
