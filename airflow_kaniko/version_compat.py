"""The one place that knows which Airflow 3.x moved what.

Supported: Airflow >= 3.1. ``airflow.sdk.exceptions`` gained the task exceptions in 3.2; on
3.1 they live in ``airflow.exceptions``.
"""

from __future__ import annotations

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

__all__ = ["AIRFLOW_VERSION", "AIRFLOW_V_3_3_PLUS", "AirflowFailException", "TaskDeferred"]

AIRFLOW_V_3_3_PLUS = Version(Version(AIRFLOW_VERSION).base_version) >= Version("3.3.0")

try:
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowFailException, TaskDeferred  # type: ignore[no-redef]
