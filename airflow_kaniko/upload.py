"""Upload a packed build context to object storage through Airflow's ObjectStoragePath.

Content-addressed: the object is ``<base>/<sha256>.tar.gz``, so a context that was already
uploaded (same bytes, same digest) is not uploaded again, and a retried prepare step finds its
own upload. Any storage that has an Airflow connection and an fsspec filesystem works; kaniko
itself reads only S3, GCS and Azure Blob Storage, so ``kaniko_context_url`` maps an object to the
URL kaniko understands and refuses what it cannot read.

Airflow is imported only when something is uploaded: importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from airflow_kaniko.errors import InvalidInputError

__all__ = ["StorageBase", "UploadResult", "kaniko_context_url", "object_base", "upload_context"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_AZURE_HOST = re.compile(r"^([a-z0-9]{3,24})\.blob\.core\.windows\.net$")
_S3 = frozenset({"s3", "s3a"})
_GCS = frozenset({"gs", "gcs"})
_AZURE = frozenset({"abfs", "abfss", "az"})
_LOCAL = frozenset({"file", "local"})
_ALLOWED = (
    "s3://bucket[/prefix], gs://bucket[/prefix], https://ACCOUNT.blob.core.windows.net/container[/prefix], "
    "abfs://container[/prefix] (kaniko reads these), file:///dir (tests and shared volumes only)"
)
_COPY_BUFFER = 8 * 1024 * 1024


@dataclass(frozen=True)
class UploadResult:
    """Where a context tarball lives, and whether this call had to upload it."""

    url: str  # the object's URL as ObjectStoragePath names it (without the connection id)
    kaniko_url: str | None  # what kaniko's --context reads; None for storage kaniko cannot read
    sha256: str
    size: int
    uploaded: bool  # False when the object was already there


@dataclass(frozen=True)
class StorageBase:
    """An upload base split into what ObjectStoragePath needs and what kaniko's URL needs."""

    storage_url: str  # given to ObjectStoragePath
    protocol: str
    account: str | None  # Azure storage account, when the base said so


def object_base(base_url: str) -> StorageBase:
    """Validate an upload base URL (``s3://bucket/prefix`` ...) before anything is packed."""
    if not isinstance(base_url, str) or "://" not in base_url:
        raise InvalidInputError(f"upload_to {base_url!r} is not a storage URL; allowed are {_ALLOWED}")
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    if parts.query or parts.fragment:
        raise InvalidInputError(
            f"upload_to {base_url!r} may not have a query or fragment; allowed are {_ALLOWED}"
        )
    if scheme == "https":
        host = _AZURE_HOST.match(parts.hostname or "")
        container, _, prefix = parts.path.lstrip("/").partition("/")
        if not host or not container:
            raise InvalidInputError(
                f"upload_to {base_url!r}: an https base must be Azure Blob Storage, "
                "https://ACCOUNT.blob.core.windows.net/container[/prefix]"
            )
        storage = f"abfs://{container}/{prefix}".rstrip("/")
        return StorageBase(storage_url=storage, protocol="abfs", account=host.group(1))
    if scheme in _S3 | _GCS | _AZURE:
        if not parts.hostname:
            raise InvalidInputError(
                f"upload_to {base_url!r} names no bucket or container; allowed are {_ALLOWED}"
            )
        account = None
        if scheme in _AZURE and "@" in parts.netloc:
            # abfs://container@ACCOUNT.dfs.core.windows.net/prefix names the account itself.
            account = parts.netloc.rpartition("@")[2].split(".", 1)[0]
        return StorageBase(storage_url=base_url.rstrip("/"), protocol=scheme, account=account)
    if scheme in _LOCAL:
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise InvalidInputError(f"upload_to {base_url!r} must be an absolute path: file:///dir")
        return StorageBase(storage_url=base_url.rstrip("/"), protocol="file", account=None)
    raise InvalidInputError(
        f"upload_to {base_url!r}: scheme {scheme!r} is not supported; allowed are {_ALLOWED}"
    )


def kaniko_context_url(*, protocol: str, bucket: str, key: str, account: str | None = None) -> str | None:
    """The ``--context`` URL kaniko reads for an object; None for storage kaniko cannot read."""
    if protocol in _S3:
        return f"s3://{bucket}/{key}"
    if protocol in _GCS:
        return f"gs://{bucket}/{key}"
    if protocol in _AZURE:
        if not account:
            raise InvalidInputError(
                f"cannot tell the Azure storage account of abfs://{bucket}/{key}: give upload_to as "
                "https://ACCOUNT.blob.core.windows.net/container/prefix, or use a connection that names it"
            )
        # abfs://container@account... spells the container before the '@'.
        return f"https://{account}.blob.core.windows.net/{bucket.partition('@')[0]}/{key}"
    return None


def upload_context(
    archive: str | os.PathLike[str],
    base_url: str,
    *,
    sha256: str,
    conn_id: str | None = None,
) -> UploadResult:
    """Upload ``archive`` (a packed context whose digest is ``sha256``) to ``<base_url>/<sha256>.tar.gz``.

    Skipped when an object of the same name and size is there already. ``conn_id`` is the
    Airflow connection ObjectStoragePath uses for the storage.
    """
    from airflow.sdk import ObjectStoragePath

    if not _SHA256.match(sha256):
        raise InvalidInputError(f"sha256 {sha256!r} is not a lowercase hex sha256 digest")
    base = object_base(base_url)
    size = os.path.getsize(archive)
    target: Any = ObjectStoragePath(base.storage_url, conn_id=conn_id) / f"{sha256}.tar.gz"
    account = base.account or _fs_account(target)
    kaniko_url = kaniko_context_url(
        protocol=base.protocol, bucket=target.bucket, key=target.key, account=account
    )
    url = _display_url(target, base.protocol)

    if _already_there(target, size):
        return UploadResult(url=url, kaniko_url=kaniko_url, sha256=sha256, size=size, uploaded=False)
    if base.protocol == "file":
        target.parent.mkdir(parents=True, exist_ok=True)
    with open(archive, "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, _COPY_BUFFER)
    return UploadResult(url=url, kaniko_url=kaniko_url, sha256=sha256, size=size, uploaded=True)


def _already_there(target: Any, size: int) -> bool:
    # Object stores write whole objects, but a file backend can hold a partial write from a
    # crashed try: an object of another size is written again.
    try:
        return bool(target.exists()) and int(target.stat().st_size) == size
    except FileNotFoundError:
        return False


def _fs_account(target: Any) -> str | None:
    if target.protocol not in _AZURE:
        return None
    account = getattr(target.fs, "account_name", None)
    return str(account) if account else None


def _display_url(target: Any, protocol: str) -> str:
    if protocol == "file":
        return f"file://{target.path}"
    return f"{protocol}://{target.bucket}/{target.key}"
