"""Container image builds as retryable Airflow steps: kaniko as a Kubernetes Job.

Importing this package is cheap: Airflow and Kubernetes clients load only in the adapters.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
