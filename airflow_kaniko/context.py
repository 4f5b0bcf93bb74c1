"""Build context sources: where kaniko reads the context from, and what the pod needs for it.

A source is a string a user (or KanikoContextOperator's XCom) gives as ``context``:

=================================================  ==============================================
``git://host/org/repo.git[#ref[#commit]]``         kaniko clones it; credentials through a Secret
``s3://bucket/key.tar.gz``, ``gs://bucket/key``    kaniko downloads the tarball itself
``https://ACCOUNT.blob.core.windows.net/c/k``      Azure Blob Storage tarball, read by kaniko
``pvc://claim[/sub/path]``                         the claim is mounted, ``--context`` is the path
``local:///absolute/dir``                          packed at build time into a ConfigMap the Job owns
=================================================  ==============================================

``plan_context`` turns a source into a ``ContextPlan``: the ``--context`` argument, volumes,
mounts and environment. Pure; packing the local directory is ``packing.py``'s job.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.validation import validate_dns_subdomain

__all__ = [
    "CONFIGMAP_ARCHIVE_KEY",
    "CONFIGMAP_LIMIT_BYTES",
    "ContextKind",
    "ContextPlan",
    "plan_context",
]

CONFIGMAP_ARCHIVE_KEY = "context.tar.gz"
# The API server refuses a ConfigMap whose keys plus values exceed 1 MiB (ValidateConfigMap).
CONFIGMAP_LIMIT_BYTES = 1024 * 1024 - len(CONFIGMAP_ARCHIVE_KEY)
CONTEXT_VOLUME = "build-context"
_ARCHIVE_MOUNT = "/kaniko/context-archive"
_PVC_MOUNT = "/kaniko/context-pvc"
_ALLOWED = (
    "git://host/org/repo.git[#ref[#commit]], s3://bucket/key.tar.gz, gs://bucket/key.tar.gz, "
    "https://ACCOUNT.blob.core.windows.net/container/key.tar.gz, pvc://claim[/sub/path], local:///absolute/dir"
)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$")
_AZURE_HOST = re.compile(r"^[a-z0-9]{3,24}\.blob\.core\.windows\.net$")
_GIT_REF = re.compile(r"^[A-Za-z0-9._/+-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{7,64}$")


class ContextKind(StrEnum):
    GIT = "git"
    S3 = "s3"
    GCS = "gs"
    AZURE = "azure"
    PVC = "pvc"
    LOCAL = "local"


@dataclass(frozen=True, kw_only=True)
class ContextPlan:
    """What the kaniko container needs to read one context source."""

    kind: ContextKind
    kaniko_context: str
    volumes: tuple[dict[str, Any], ...] = ()
    volume_mounts: tuple[dict[str, Any], ...] = ()
    env: tuple[dict[str, Any], ...] = ()
    # Set for ``local://``: the directory the operator packs into the Job's ConfigMap.
    local_directory: str | None = None
    extra_args: tuple[str, ...] = field(default=())


def _bad(source: str, why: str) -> InvalidInputError:
    return InvalidInputError(f"context {source!r} is not valid: {why}; allowed are {_ALLOWED}")


def _clean_subpath(source: str, path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if any(p in {".", ".."} for p in parts):
        raise _bad(source, "the path may not contain '.' or '..' components")
    return "/".join(parts)


def _git_env(secret_name: str | None) -> tuple[dict[str, Any], ...]:
    if secret_name is None:
        return ()
    # kaniko reads GIT_USERNAME/GIT_PASSWORD (or GIT_TOKEN); optional keys let a Secret carry either.
    return tuple(
        {
            "name": key,
            "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key, "optional": True}},
        }
        for key in ("GIT_USERNAME", "GIT_PASSWORD", "GIT_TOKEN")
    )


def _plan_git(source: str, git_secret: str | None) -> ContextPlan:
    url, _, fragment = source.partition("#")
    parts = urlsplit(url)
    if not parts.hostname or not parts.path.strip("/"):
        raise _bad(source, "a git source needs a host and a repository path")
    if parts.username or parts.password:
        raise _bad(
            "git://" + (parts.hostname or "") + parts.path,
            "credentials may not be written into the URL; give git_conn_id or git_secret",
        )
    if fragment:
        ref, _, commit = fragment.partition("#")
        if ref and not _GIT_REF.match(ref):
            raise _bad(source, f"git ref {ref!r} has characters outside [A-Za-z0-9._/+-]")
        if commit and not _COMMIT.match(commit):
            raise _bad(source, f"git commit {commit!r} is not a hex commit id")
    return ContextPlan(kind=ContextKind.GIT, kaniko_context=source, env=_git_env(git_secret))


def _plan_bucket(source: str, kind: ContextKind) -> ContextPlan:
    parts = urlsplit(source)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not _BUCKET.match(bucket):
        raise _bad(source, f"bucket {bucket!r} is not a valid bucket name")
    if not key.endswith(".tar.gz"):
        raise _bad(source, "kaniko reads a bucket context as a .tar.gz object; the key must end in .tar.gz")
    return ContextPlan(kind=kind, kaniko_context=source)


def _plan_azure(source: str) -> ContextPlan:
    parts = urlsplit(source)
    if not _AZURE_HOST.match(parts.hostname or "") or parts.path.count("/") < 2:
        raise _bad(source, "an https context must be an Azure Blob Storage URL")
    if not parts.path.endswith(".tar.gz"):
        raise _bad(source, "kaniko reads a blob context as a .tar.gz object; the path must end in .tar.gz")
    return ContextPlan(kind=ContextKind.AZURE, kaniko_context=source)


def _plan_pvc(source: str) -> ContextPlan:
    rest = source[len("pvc://") :]
    claim, _, path = rest.partition("/")
    validate_dns_subdomain(claim, what=f"PersistentVolumeClaim name in context {source!r}")
    subpath = _clean_subpath(source, path)
    directory = posixpath.join(_PVC_MOUNT, subpath) if subpath else _PVC_MOUNT
    return ContextPlan(
        kind=ContextKind.PVC,
        kaniko_context=f"dir://{directory}",
        volumes=({"name": CONTEXT_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}},),
        volume_mounts=({"name": CONTEXT_VOLUME, "mountPath": _PVC_MOUNT, "readOnly": True},),
    )


def _plan_local(source: str, configmap_name: str) -> ContextPlan:
    directory = source[len("local://") :]
    if not directory.startswith("/") or ".." in directory.split("/"):
        raise _bad(source, "a local context must be an absolute directory path: local:///path/to/dir")
    return ContextPlan(
        kind=ContextKind.LOCAL,
        kaniko_context=f"tar://{_ARCHIVE_MOUNT}/{CONFIGMAP_ARCHIVE_KEY}",
        volumes=({"name": CONTEXT_VOLUME, "configMap": {"name": configmap_name}},),
        volume_mounts=({"name": CONTEXT_VOLUME, "mountPath": _ARCHIVE_MOUNT, "readOnly": True},),
        local_directory=directory.rstrip("/") or "/",
    )


def plan_context(source: str, *, configmap_name: str, git_secret: str | None = None) -> ContextPlan:
    """Validate ``source`` and say how the kaniko container reads it.

    ``configmap_name`` names the ConfigMap a ``local://`` source is packed into (the Job's name);
    ``git_secret`` names the Secret holding GIT_USERNAME/GIT_PASSWORD/GIT_TOKEN for a git source.
    """
    if not isinstance(source, str) or not source.strip():
        raise InvalidInputError(f"context {source!r} is empty; allowed are {_ALLOWED}")
    scheme = source.split("://", 1)[0].lower() if "://" in source else ""
    if git_secret is not None and scheme != "git":
        raise InvalidInputError(f"git credentials were given but context {source!r} is not a git:// source")
    if scheme == "git":
        return _plan_git(source, git_secret)
    if scheme == "s3":
        return _plan_bucket(source, ContextKind.S3)
    if scheme == "gs":
        return _plan_bucket(source, ContextKind.GCS)
    if scheme == "https":
        return _plan_azure(source)
    if scheme == "pvc":
        return _plan_pvc(source)
    if scheme == "local":
        return _plan_local(source, configmap_name)
    raise _bad(source, f"scheme {scheme or '(none)'!r} is not supported")
