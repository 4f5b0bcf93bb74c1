"""Operators. Import from the submodules; this package re-exports them lazily so DAG files parse fast."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_kaniko.operators.build import KanikoBuildOperator
    from airflow_kaniko.operators.context import KanikoContextOperator
    from airflow_kaniko.operators.verify import KanikoVerifyOperator

__all__ = ["KanikoBuildOperator", "KanikoContextOperator", "KanikoVerifyOperator"]

_WHERE = {
    "KanikoBuildOperator": "airflow_kaniko.operators.build",
    "KanikoContextOperator": "airflow_kaniko.operators.context",
    "KanikoVerifyOperator": "airflow_kaniko.operators.verify",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
