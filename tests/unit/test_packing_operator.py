"""KanikoContextOperator without object storage, and the input it refuses before packing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_kaniko.context import CONFIGMAP_LIMIT_BYTES, ContextKind, plan_context
from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.operators.context import KanikoContextOperator


def make_context(root: Path, extra: dict[str, bytes] | None = None) -> Path:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text("FROM scratch\n")
    for name, content in (extra or {}).items():
        (root / name).write_bytes(content)
    return root


def test_without_upload_returns_a_local_reference_the_build_accepts(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "ctx", {"app.py": b"print(1)\n"})
    ref = KanikoContextOperator(task_id="prepare", source_dir=str(ctx)).execute(context={})
    assert ref == f"local://{ctx}"
    plan = plan_context(ref, configmap_name="build-abc")
    assert plan.kind is ContextKind.LOCAL and plan.local_directory == str(ctx)


def test_relative_source_dir_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_context(tmp_path / "ctx")
    monkeypatch.chdir(tmp_path)
    ref = KanikoContextOperator(task_id="prepare", source_dir="ctx").execute(context={})
    assert ref == f"local://{tmp_path / 'ctx'}"


def test_a_context_too_large_for_a_configmap_fails_the_prepare_step(tmp_path: Path) -> None:
    ctx = make_context(tmp_path / "ctx", {"blob.bin": os.urandom(CONFIGMAP_LIMIT_BYTES + 1000)})
    op = KanikoContextOperator(task_id="prepare", source_dir=str(ctx))
    with pytest.raises(
        InvalidInputError, match=rf"more than {CONFIGMAP_LIMIT_BYTES} bytes.*ConfigMap.*upload_to"
    ):
        op.execute(context={})


def test_a_missing_dockerfile_fails_the_prepare_step(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    op = KanikoContextOperator(
        task_id="prepare", source_dir=str(tmp_path / "ctx"), dockerfile="ci/Dockerfile"
    )
    with pytest.raises(InvalidInputError, match="'ci/Dockerfile' does not exist"):
        op.execute(context={})


@pytest.mark.parametrize(
    ("upload_to", "says"),
    [
        ("file:///srv/contexts", "kaniko cannot read file://"),
        ("ftp://host/x", "scheme 'ftp' is not supported"),
        ("s3:///nobucket", "names no bucket"),
    ],
)
def test_storage_kaniko_cannot_read_is_refused_before_packing(
    tmp_path: Path, upload_to: str, says: str
) -> None:
    # The directory does not even exist: the URL is what is reported.
    op = KanikoContextOperator(task_id="prepare", source_dir=str(tmp_path / "missing"), upload_to=upload_to)
    with pytest.raises(InvalidInputError, match=says):
        op.execute(context={})


def test_templated_fields() -> None:
    assert set(KanikoContextOperator.template_fields) == {"source_dir", "dockerfile", "upload_to", "conn_id"}
