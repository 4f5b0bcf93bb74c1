"""Upload to a real S3-compatible server on loopback (moto's server mode), through an Airflow connection.

The connection comes from an AIRFLOW_CONN_* variable, as in a deployment; ObjectStoragePath reaches
the server through the amazon provider's s3fs filesystem, over HTTP.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from moto.server import ThreadedMotoServer

from airflow_kaniko.context import ContextKind, plan_context
from airflow_kaniko.operators.context import KanikoContextOperator
from airflow_kaniko.packing import pack_directory
from airflow_kaniko.upload import upload_context

BUCKET = "kaniko-contexts"
CONN_ID = "kaniko_s3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": creds["aws_access_key_id"],
                "password": creds["aws_secret_access_key"],
                "extra": {"endpoint_url": s3_endpoint, "region_name": creds["region_name"]},
            }
        ),
    )
    client = boto3.client("s3", endpoint_url=s3_endpoint, **creds)
    client.create_bucket(Bucket=BUCKET)
    yield client
    for obj in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def context_dir(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "app").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY app /app\n")
    (ctx / "app" / "main.py").write_text("print('hello')\n")
    (ctx / ".dockerignore").write_text("*.log\n")
    (ctx / "debug.log").write_text("not shipped\n")
    return ctx


def test_upload_puts_the_archive_under_its_digest_and_skips_it_next_time(
    s3: Any, context_dir: Path, tmp_path: Path
) -> None:
    archive = tmp_path / "ctx.tar.gz"
    sha = pack_directory(context_dir, archive).sha256
    first = upload_context(archive, f"s3://{BUCKET}/builds/app", sha256=sha, conn_id=CONN_ID)
    key = f"builds/app/{sha}.tar.gz"
    assert first.uploaded
    assert first.kaniko_url == first.url == f"s3://{BUCKET}/{key}"
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == sha

    before = s3.head_object(Bucket=BUCKET, Key=key)["LastModified"]
    second = upload_context(archive, f"s3://{BUCKET}/builds/app/", sha256=sha, conn_id=CONN_ID)
    assert not second.uploaded
    assert second.kaniko_url == first.kaniko_url
    assert s3.head_object(Bucket=BUCKET, Key=key)["LastModified"] == before
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [key]


def test_operator_returns_a_context_the_build_accepts(s3: Any, context_dir: Path) -> None:
    op = KanikoContextOperator(
        task_id="prepare", source_dir=str(context_dir), upload_to=f"s3://{BUCKET}/ctx", conn_id=CONN_ID
    )
    url = op.execute(context={})
    assert url.startswith(f"s3://{BUCKET}/ctx/") and url.endswith(".tar.gz")
    plan = plan_context(url, configmap_name="unused")
    assert plan.kind is ContextKind.S3 and plan.kaniko_context == url

    # The same content again (a retry, or tomorrow's run): the same object, still one of it.
    assert op.execute(context={}) == url
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == [url.removeprefix(f"s3://{BUCKET}/")]

    # What was uploaded is the packed context: .dockerignore applied.
    body = s3.get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
        assert set(tar.getnames()) == {".dockerignore", "Dockerfile", "app", "app/main.py"}
