"""Sensors, re-exported lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_kaniko.sensors.job import KanikoJobSensor
    from airflow_kaniko.sensors.registry import RegistryImageSensor

__all__ = ["KanikoJobSensor", "RegistryImageSensor"]

_WHERE = {
    "KanikoJobSensor": "airflow_kaniko.sensors.job",
    "RegistryImageSensor": "airflow_kaniko.sensors.registry",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(name)
