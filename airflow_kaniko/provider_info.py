"""Provider metadata, read by Airflow's ProvidersManager through the entry point."""

from __future__ import annotations

from typing import Any

from airflow_kaniko import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-kaniko",
        "name": "Kaniko",
        "description": "Build container images with kaniko as Kubernetes Jobs, verify them in the registry.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Kaniko",
                "external-doc-url": "https://github.com/osscontainertools/kaniko",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "Kaniko",
                "python-modules": ["airflow_kaniko.operators"],
            }
        ],
        "sensors": [{"integration-name": "Kaniko", "python-modules": ["airflow_kaniko.sensors"]}],
        "triggers": [{"integration-name": "Kaniko", "python-modules": ["airflow_kaniko.triggers"]}],
        "hooks": [{"integration-name": "Kaniko", "python-modules": ["airflow_kaniko.hooks"]}],
    }
