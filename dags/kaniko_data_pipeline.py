"""A data pipeline whose first step builds the image its next step runs, by digest."""

from __future__ import annotations

import json
from typing import Any

import pendulum
from _settings import DEFAULT_ARGS, IMAGES_DIR, INSECURE_KANIKO_ARGS, NAMESPACE, REGISTRY_CONN_ID, UPLOAD_TO
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from airflow.sdk import DAG, task

from airflow_kaniko.operators.build import KanikoBuildOperator
from airflow_kaniko.operators.context import KanikoContextOperator
from airflow_kaniko.operators.verify import KanikoVerifyOperator

DOC = """
### Build, then run by digest

`prepare` packs `dags/images/report-runner`; `build` builds it with kaniko (tag
`run-<run id hash>`); `verify` proves the tag resolves to the digest kaniko reported; `report`
runs a pod from **`image@digest`** (the build's XCom `image`), so the pipeline runs exactly the
bytes it built, even if the tag moves. A rerun of `build` for the same run reattaches to
its Job or returns its result.
"""


@task(multiple_outputs=True)
def targets(run_id: str | None = None) -> dict[str, Any]:
    import hashlib

    from airflow.sdk import Variable

    registry = Variable.get("kaniko_registry", default="registry:5000")
    tag = "run-" + hashlib.sha256(str(run_id).encode()).hexdigest()[:12]
    return {
        "destinations": [f"{registry}/report-runner:{tag}"],
        "extra_args": json.loads(Variable.get("kaniko_extra_args", default=json.dumps(INSECURE_KANIKO_ARGS))),
        "pod_annotations": json.loads(Variable.get("kaniko_pod_annotations", default="{}")),
        "report_annotations": json.loads(Variable.get("pipeline_pod_annotations", default="{}")),
        "insecure_registries": json.loads(Variable.get("kaniko_insecure_registries", default=json.dumps([registry]))),
    }


with DAG(
    dag_id="kaniko_data_pipeline",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    doc_md=DOC,
    tags=["kaniko", "pipeline"],
) as dag:
    where = targets()
    prepare = KanikoContextOperator(
        task_id="prepare", source_dir=str(IMAGES_DIR / "report-runner"), upload_to=UPLOAD_TO
    )
    build = KanikoBuildOperator(
        task_id="build",
        context=prepare.output,
        destinations=where["destinations"],
        build_args={"VERSION": "{{ ds }}"},
        namespace=NAMESPACE,
        registry_conn_id=REGISTRY_CONN_ID,
        extra_args=where["extra_args"],
        pod_annotations=where["pod_annotations"],
        execution_timeout=pendulum.duration(minutes=30),
    )
    verify = KanikoVerifyOperator(
        task_id="verify",
        build=build.output,
        registry_conn_id=REGISTRY_CONN_ID,
        insecure_registries=where["insecure_registries"],
        retries=3,
        retry_delay=pendulum.duration(seconds=20),
    )
    report = KubernetesPodOperator(
        task_id="report",
        name="report-runner",
        namespace=NAMESPACE,
        image="{{ ti.xcom_pull(task_ids='build')['image'] }}",
        arguments=["{{ ds }}"],
        annotations=where["report_annotations"],
        get_logs=True,
        on_finish_action="delete_pod",
    )
    verify >> report
