"""The package's exception types. Every message names the bad value and what is allowed."""

from __future__ import annotations

__all__ = ["BuildFailedError", "InvalidInputError", "KanikoError", "RegistryError", "VerificationError"]


class KanikoError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidInputError(KanikoError, ValueError):
    """A user-supplied value is not allowed; raised before anything is created in the cluster."""


class BuildFailedError(KanikoError):
    """The build Job failed or got stuck; the message carries the reason kaniko or Kubernetes gave."""


class RegistryError(KanikoError):
    """The registry could not be asked (unauthorized, TLS, unreachable, unexpected answer)."""


class VerificationError(KanikoError):
    """The registry answered, and the answer disproves the build (not found, digest mismatch)."""
