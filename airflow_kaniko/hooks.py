"""Cluster access for the adapters, composed from the cncf.kubernetes provider's hooks.

The ``kubernetes`` connection, kubeconfig and in-cluster configuration are the provider's;
this hook only hands out ``SyncCluster`` / ``AsyncCluster`` drivers built on its clients.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any

from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook, KubernetesHook

from airflow_kaniko.cluster import AsyncCluster, SyncCluster
from airflow_kaniko.credentials import docker_config_json
from airflow_kaniko.errors import InvalidInputError

__all__ = ["KanikoClusterHook", "docker_config_from_connection"]


class KanikoClusterHook:
    """Builds the cluster drivers from one ``kubernetes`` connection (and optional overrides)."""

    def __init__(
        self,
        *,
        kubernetes_conn_id: str | None = "kubernetes_default",
        config_file: str | None = None,
        cluster_context: str | None = None,
        in_cluster: bool | None = None,
    ) -> None:
        self.kubernetes_conn_id = kubernetes_conn_id
        self.config_file = config_file
        self.cluster_context = cluster_context
        self.in_cluster = in_cluster

    @cached_property
    def kubernetes_hook(self) -> KubernetesHook:
        return KubernetesHook(
            conn_id=self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
        )

    def sync_cluster(self) -> SyncCluster:
        return SyncCluster(self.kubernetes_hook.api_client)

    @contextlib.asynccontextmanager
    async def async_cluster(
        self, *, connection_extras: dict[str, Any] | None = None
    ) -> AsyncIterator[AsyncCluster]:
        """An AsyncCluster for the same connection.

        In a worker, pass the sync hook's ``connection_extras`` so the connection is not looked
        up again from inside the event loop; the triggerer looks it up asynchronously.
        """
        hook = AsyncKubernetesHook(
            conn_id=self.kubernetes_conn_id,
            config_file=self.config_file,
            cluster_context=self.cluster_context,
            in_cluster=self.in_cluster,
            connection_extras=connection_extras,
        )
        async with hook.get_conn() as api_client:
            yield AsyncCluster(api_client)

    def connection_arguments(self) -> dict[str, Any]:
        """The arguments naming this cluster connection, so a trigger can rebuild the hook."""
        return {
            "kubernetes_conn_id": self.kubernetes_conn_id,
            "config_file": self.config_file,
            "cluster_context": self.cluster_context,
            "in_cluster": self.in_cluster,
        }

    def connection_extras(self) -> dict[str, Any]:
        return dict(self.kubernetes_hook.conn_extras)


def docker_config_from_connection(conn_id: str) -> str:
    """A dockerconfigjson for the registry an Airflow connection describes (host, login, password)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    if not conn.host:
        raise InvalidInputError(
            f"registry connection {conn_id!r} has no host: set it to the registry, e.g. ghcr.io"
        )
    return docker_config_json(registry=conn.host, username=conn.login or "", password=conn.password or "")
