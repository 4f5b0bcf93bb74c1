"""The example DAGs load in a DagBag with no import errors, quickly, and have what users rely on."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag():  # type: ignore[no-untyped-def]
    import sys

    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    # Airflow puts its dags folder on sys.path, which is how the DAGs import _settings.
    sys.path.insert(0, str(DAGS))
    bag = DagBag(dag_folder=str(DAGS))
    return bag


def test_no_import_errors(dagbag) -> None:  # type: ignore[no-untyped-def]
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"kaniko_nightly_images", "kaniko_manual_build", "kaniko_data_pipeline"}


def test_each_dag_documents_itself_and_retries(dagbag) -> None:  # type: ignore[no-untyped-def]
    for dag in dagbag.dags.values():
        assert dag.doc_md and "kaniko" in dag.tags
        build = dag.get_task("build")
        assert build.retries >= 1


def test_nightly_is_a_mapped_matrix_prepare_build_verify(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags.get("kaniko_nightly_images")
    timetable = dag.timetable
    assert (getattr(timetable, "expression", None) or timetable.summary) == "0 2 * * *"
    assert {"prepare", "build", "verify"} <= set(dag.task_ids)
    assert "prepare" in dag.get_task("build").upstream_task_ids
    assert "build" in dag.get_task("verify").upstream_task_ids


def test_manual_dag_has_a_form(dagbag) -> None:  # type: ignore[no-untyped-def]
    params = dagbag.dags.get("kaniko_manual_build").params
    assert {"repository", "ref", "dockerfile", "tags", "build_args", "push"} <= set(params.keys())


def test_pipeline_runs_the_built_image_by_digest(dagbag) -> None:  # type: ignore[no-untyped-def]
    dag = dagbag.dags.get("kaniko_data_pipeline")
    report = dag.get_task("report")
    assert "['image']" in report.image and "build" in report.image
    assert "verify" in report.upstream_task_ids
