"""Nightly rebuild of a set of images: a matrix through dynamic task mapping."""

from __future__ import annotations

import json
from typing import Any

import pendulum
from _settings import DEFAULT_ARGS, IMAGES_DIR, INSECURE_KANIKO_ARGS, NAMESPACE, REGISTRY_CONN_ID, UPLOAD_TO
from airflow.sdk import DAG, task

from airflow_kaniko.operators.build import KanikoBuildOperator
from airflow_kaniko.operators.context import KanikoContextOperator
from airflow_kaniko.operators.verify import KanikoVerifyOperator

DOC = """
### Nightly image rebuild

Every night, for each image of the matrix: **prepare** (pack its directory, honouring
`.dockerignore`; upload it to object storage when `kaniko_context_upload_to` is set, else
carry it in a ConfigMap) >> **build** (kaniko as a Kubernetes Job, tags `nightly-<date>` and
`latest`) >> **verify** (every tag resolves in the registry to the digest kaniko reported).

The matrix is the Variable `kaniko_nightly_images`, a JSON list of
`{"name": ..., "source_dir": ..., "dockerfile": "Dockerfile", "build_args": {...}}`;
by default the images under `dags/images/`. Other settings: see `dags/_settings.py`.
A retry after a worker crash reattaches to the running Job instead of building twice.
"""


@task
def image_matrix(ds_nodash: str | None = None) -> list[dict[str, Any]]:
    """The images to build tonight, with their destinations; read at run time, not parse time."""
    from airflow.sdk import Variable

    default = [
        {"name": path.name, "source_dir": str(path)} for path in sorted(IMAGES_DIR.iterdir()) if (path / "Dockerfile").exists()
    ]
    images = json.loads(Variable.get("kaniko_nightly_images", default=json.dumps(default)))
    registry = Variable.get("kaniko_registry", default="registry:5000")
    flags = json.loads(Variable.get("kaniko_extra_args", default=json.dumps(INSECURE_KANIKO_ARGS)))
    annotations = json.loads(Variable.get("kaniko_pod_annotations", default="{}"))
    insecure = json.loads(Variable.get("kaniko_insecure_registries", default=json.dumps([registry])))
    return [
        {
            "source_dir": image["source_dir"],
            "dockerfile": image.get("dockerfile", "Dockerfile"),
            "destinations": [f"{registry}/{image['name']}:nightly-{ds_nodash}", f"{registry}/{image['name']}:latest"],
            "build_args": {"VERSION": f"nightly-{ds_nodash}", **image.get("build_args", {})},
            "extra_args": flags,
            "insecure_registries": insecure,
            "pod_annotations": annotations,
        }
        for image in images
    ]


def _prepare_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    return {"source_dir": spec["source_dir"], "dockerfile": spec["dockerfile"]}


def _verify_kwargs(pair: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    spec, build = pair
    return {"build": build, "insecure_registries": spec["insecure_registries"]}


def _build_kwargs(pair: tuple[dict[str, Any], str]) -> dict[str, Any]:
    spec, context = pair
    return {
        "context": context,
        "dockerfile": spec["dockerfile"],
        "destinations": spec["destinations"],
        "build_args": spec["build_args"],
        "extra_args": spec["extra_args"],
        "pod_annotations": spec["pod_annotations"],
    }


with DAG(
    dag_id="kaniko_nightly_images",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=DOC,
    tags=["kaniko", "images", "nightly"],
) as dag:
    specs = image_matrix()
    prepare = KanikoContextOperator.partial(task_id="prepare", upload_to=UPLOAD_TO).expand_kwargs(
        specs.map(_prepare_kwargs)
    )
    build = KanikoBuildOperator.partial(
        task_id="build",
        namespace=NAMESPACE,
        registry_conn_id=REGISTRY_CONN_ID,
        cache=True,
        execution_timeout=pendulum.duration(hours=1),
    ).expand_kwargs(specs.zip(prepare.output).map(_build_kwargs))
    verify = KanikoVerifyOperator.partial(
        task_id="verify",
        registry_conn_id=REGISTRY_CONN_ID,
        retries=3,
        retry_delay=pendulum.duration(seconds=30),
    ).expand_kwargs(specs.zip(build.output).map(_verify_kwargs))
