"""Uploading a packed context through ObjectStoragePath: the local file backend, and URL mapping."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.packing import pack_directory
from airflow_kaniko.upload import kaniko_context_url, object_base, upload_context


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, str]:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    (ctx / "app.py").write_text("print('hello')\n")
    out = tmp_path / "ctx.tar.gz"
    return out, pack_directory(ctx, out).sha256


def test_file_backend_upload_is_content_addressed_and_skipped_when_there(
    tmp_path: Path, archive: tuple[Path, str]
) -> None:
    path, sha = archive
    base = f"file://{tmp_path}/store/contexts"
    first = upload_context(path, base, sha256=sha)
    stored = tmp_path / "store" / "contexts" / f"{sha}.tar.gz"
    assert first.uploaded
    assert stored.read_bytes() == path.read_bytes()
    assert first.url == f"file://{stored}"
    assert first.kaniko_url is None  # kaniko cannot read file://: the operator refuses it
    mtime = stored.stat().st_mtime_ns

    second = upload_context(path, base + "/", sha256=sha)
    assert not second.uploaded
    assert second.url == first.url
    assert stored.stat().st_mtime_ns == mtime


def test_a_partial_object_is_uploaded_again(tmp_path: Path, archive: tuple[Path, str]) -> None:
    path, sha = archive
    stored = tmp_path / "store" / f"{sha}.tar.gz"
    stored.parent.mkdir()
    stored.write_bytes(path.read_bytes()[:10])  # what a crashed try may leave on a file system
    result = upload_context(path, f"file://{tmp_path}/store", sha256=sha)
    assert result.uploaded
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha


def test_digest_must_be_a_sha256(tmp_path: Path, archive: tuple[Path, str]) -> None:
    path, _ = archive
    with pytest.raises(InvalidInputError, match="'ABC' is not a lowercase hex sha256"):
        upload_context(path, f"file://{tmp_path}", sha256="ABC")


@pytest.mark.parametrize(
    ("protocol", "bucket", "key", "account", "url"),
    [
        ("s3", "bkt", "pre/abc.tar.gz", None, "s3://bkt/pre/abc.tar.gz"),
        ("s3a", "bkt", "abc.tar.gz", None, "s3://bkt/abc.tar.gz"),
        ("gs", "bkt", "p/abc.tar.gz", None, "gs://bkt/p/abc.tar.gz"),
        ("gcs", "bkt", "abc.tar.gz", None, "gs://bkt/abc.tar.gz"),
        ("abfs", "ctr", "p/abc.tar.gz", "acct", "https://acct.blob.core.windows.net/ctr/p/abc.tar.gz"),
        (
            "abfs",
            "ctr@acct.dfs.core.windows.net",
            "abc.tar.gz",
            "acct",
            "https://acct.blob.core.windows.net/ctr/abc.tar.gz",
        ),
        ("file", "", "tmp/abc.tar.gz", None, None),
    ],
)
def test_kaniko_context_url(
    protocol: str, bucket: str, key: str, account: str | None, url: str | None
) -> None:
    assert kaniko_context_url(protocol=protocol, bucket=bucket, key=key, account=account) == url


def test_azure_without_an_account_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="Azure storage account"):
        kaniko_context_url(protocol="abfs", bucket="ctr", key="a.tar.gz")


def test_object_base_accepts_what_kaniko_reads() -> None:
    assert object_base("s3://bkt/prefix/").storage_url == "s3://bkt/prefix"
    assert object_base("gs://bkt").protocol == "gs"
    azure = object_base("https://acct.blob.core.windows.net/ctr/some/prefix")
    assert (azure.storage_url, azure.protocol, azure.account) == ("abfs://ctr/some/prefix", "abfs", "acct")
    assert object_base("abfs://ctr@acct.dfs.core.windows.net/p").account == "acct"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("bucket/prefix", "is not a storage URL"),
        ("ftp://host/dir", "scheme 'ftp' is not supported"),
        ("https://example.com/ctr/p", "must be Azure Blob Storage"),
        ("https://acct.blob.core.windows.net/", "must be Azure Blob Storage"),
        ("s3:///prefix", "names no bucket"),
        ("s3://bkt/p?x=1", "query or fragment"),
        ("file://relative/dir", "absolute path"),
    ],
)
def test_object_base_refuses_and_names_the_value(bad: str, says: str) -> None:
    with pytest.raises(InvalidInputError, match=says) as err:
        object_base(bad)
    assert repr(bad) in str(err.value)
