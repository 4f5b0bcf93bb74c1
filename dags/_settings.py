"""Settings the example DAGs share, read from Airflow Variables at run time (never at parse time).

Variables (all optional). The Kubernetes API is the ``kubernetes_default`` connection (see the
README's Configuration section).
- ``kaniko_registry``: registry host[:port] images are pushed to (default ``registry:5000``,
  the compose stack's registry)
- ``kaniko_namespace``: namespace the build Jobs run in (default ``default``)
- ``kaniko_registry_conn_id``: an Airflow connection with the registry's login/password, made
  into a short-lived Secret per build (default: none, anonymous push)
- ``kaniko_insecure_registries``: JSON list of plain-HTTP registries (default: the registry above)
- ``kaniko_extra_args``: JSON list of kaniko flags (default ``["--insecure", "--insecure-pull"]``
  for the compose stack's plain-HTTP registry; set ``[]`` for a TLS registry)
- ``kaniko_pod_annotations``: JSON object of annotations for the build pods (e.g. a cost
  centre, ``sidecar.istio.io/inject: "false"``); ``pipeline_pod_annotations`` likewise for the
  data pipeline's report pod
- ``kaniko_context_upload_to``: object-storage URL for packed contexts, e.g. ``s3://bucket/ctx``
  (default: none, small contexts travel in a ConfigMap)
"""

from __future__ import annotations

from pathlib import Path

IMAGES_DIR = Path(__file__).parent / "images"

REGISTRY = "{{ var.value.get('kaniko_registry', 'registry:5000') }}"
NAMESPACE = "{{ var.value.get('kaniko_namespace', 'default') }}"
REGISTRY_CONN_ID = "{{ var.value.get('kaniko_registry_conn_id', '') }}"
UPLOAD_TO = "{{ var.value.get('kaniko_context_upload_to', '') }}"

# kaniko pushes to a plain-HTTP registry only when told so; the verification step likewise.
INSECURE_KANIKO_ARGS = ["--insecure", "--insecure-pull"]

DEFAULT_ARGS = {
    "owner": "platform",
    "retries": 2,
}
