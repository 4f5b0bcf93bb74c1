"""Manual image build from the Airflow UI: a Params form."""

from __future__ import annotations

import json
from typing import Any

import pendulum
from _settings import DEFAULT_ARGS, INSECURE_KANIKO_ARGS, NAMESPACE, REGISTRY_CONN_ID
from airflow.sdk import DAG, Param, task

from airflow_kaniko.operators.build import KanikoBuildOperator
from airflow_kaniko.operators.verify import KanikoVerifyOperator

DOC = """
### Manual image build

Trigger with the form: a git repository and ref (or any context kaniko reads: `s3://`,
`gs://`, Azure `https://`, `pvc://`), the Dockerfile path, tags, build args, and whether to
push. The image is pushed to `<kaniko_registry>/<image>:<tag>` for each tag, then verified in
the registry (skipped when not pushing). The form refuses an image name that is not lowercase
`[a-z0-9]` joined by `.`, `_`, `-` or `/`; other bad input (a tag with a space, a name over 255
characters with the registry, an unknown context scheme) fails the build task before anything
is created in the cluster.
"""


@task(multiple_outputs=True)
def plan(params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Turn the form into the build's arguments (Variables are read here, at run time)."""
    from airflow.sdk import Variable

    assert params is not None
    registry = Variable.get("kaniko_registry", default="registry:5000")
    context = params["context"] or f"git://{params['repository'].removeprefix('https://')}#{params['ref']}"
    return {
        "context": context,
        "destinations": [f"{registry}/{params['image']}:{tag}" for tag in params["tags"]],
        "build_args": {str(k): str(v) for k, v in params["build_args"].items()},
        "target": params["target"] or None,
        "push": bool(params["push"]),
        "extra_args": json.loads(Variable.get("kaniko_extra_args", default=json.dumps(INSECURE_KANIKO_ARGS))),
        "pod_annotations": json.loads(Variable.get("kaniko_pod_annotations", default="{}")),
        "insecure_registries": json.loads(Variable.get("kaniko_insecure_registries", default=json.dumps([registry]))),
    }


@task.short_circuit
def pushed(params: dict[str, Any] | None = None) -> bool:
    return bool(params and params["push"])


with DAG(
    dag_id="kaniko_manual_build",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={**DEFAULT_ARGS, "retries": 1},
    doc_md=DOC,
    tags=["kaniko", "images", "manual"],
    params={
        "repository": Param("github.com/example/app.git", type="string", title="Git repository",
                            description="host/org/repo.git, cloned by kaniko"),
        "ref": Param("refs/heads/main", type="string", title="Git ref"),
        "context": Param("", type="string", title="Context (overrides repository/ref)",
                         description="s3://..., gs://..., https://<account>.blob.core.windows.net/..., pvc://claim/path"),
        "dockerfile": Param("Dockerfile", type="string", title="Dockerfile path inside the context"),
        "image": Param("app", type="string", pattern=r"^[a-z0-9]+([._/-][a-z0-9]+)*$", title="Image name"),
        "tags": Param(["latest"], type="array", items={"type": "string"}, minItems=1, title="Tags"),
        "build_args": Param({}, type="object", title="Build args (JSON object)"),
        "target": Param("", type="string", title="Target stage (optional)"),
        "push": Param(True, type="boolean", title="Push (and verify) the image"),
    },
) as dag:
    args = plan()
    build = KanikoBuildOperator(
        task_id="build",
        context=args["context"],
        destinations=args["destinations"],
        dockerfile="{{ params.dockerfile }}",
        build_args=args["build_args"],
        target=args["target"],
        push=args["push"],
        namespace=NAMESPACE,
        registry_conn_id=REGISTRY_CONN_ID,
        extra_args=args["extra_args"],
        pod_annotations=args["pod_annotations"],
        execution_timeout=pendulum.duration(hours=1),
    )
    verify = KanikoVerifyOperator(
        task_id="verify",
        build=build.output,
        registry_conn_id=REGISTRY_CONN_ID,
        insecure_registries=args["insecure_registries"],
        retries=3,
        retry_delay=pendulum.duration(seconds=20),
    )
    build >> pushed() >> verify
