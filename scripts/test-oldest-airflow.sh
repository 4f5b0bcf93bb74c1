#!/usr/bin/env bash
# Run the unit tier against the oldest Airflow this package declares (pyproject: >=3.1.0).
set -euo pipefail
cd "$(dirname "$0")/.."
AIRFLOW_OLDEST="${AIRFLOW_OLDEST:-3.1.8}"
venv="${AIRFLOW_OLDEST_VENV:-$HOME/.cache/airflow-kaniko/venv-airflow-$AIRFLOW_OLDEST}"
[ -x "$venv/bin/python" ] || uv venv -q -p 3.11 "$venv"
VIRTUAL_ENV="$venv" uv pip install -q -e . "apache-airflow==$AIRFLOW_OLDEST" pytest pytest-asyncio check-jsonschema
"$venv/bin/python" -m pytest tests/unit -q -p no:cacheprovider
