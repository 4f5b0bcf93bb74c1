"""RegistryImageSensor: wait until a registry shows an image (with the expected digest).

For eventually consistent registries (replicated or cached ones that show a push late):
every poke asks the registries and lets ``verification.verify`` decide; the sensor only
turns the verdict into "done", "not yet" or "failed". It runs in ``reschedule`` mode by
default, so a waiting sensor holds no worker slot between pokes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_kaniko.operators._bad_input import fail_without_retry_on_bad_input
from airflow_kaniko.operators.verify import (
    VERIFY_TEMPLATE_FIELDS,
    VERIFY_TEMPLATE_RENDERERS,
    _VerifyFields,
    verified_result,
)
from airflow_kaniko.version_compat import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["RegistryImageSensor"]


class RegistryImageSensor(_VerifyFields, BaseSensorOperator):
    """Poke until every reference resolves (to ``digest``, when one is known).

    Takes the same arguments as KanikoVerifyOperator, plus the sensor's own (``mode``,
    ``poke_interval``, ``timeout``). Not found, another digest (a tag not yet updated) or an
    unreachable registry mean "not yet"; refused credentials, TLS failures and wrong
    platforms or labels fail at once, since waiting cannot fix them. Returns (XCom)
    ``{image, digest, verified}``.
    """

    template_fields: Sequence[str] = VERIFY_TEMPLATE_FIELDS
    template_fields_renderers: ClassVar[dict[str, str]] = VERIFY_TEMPLATE_RENDERERS
    ui_color = "#d9ead3"

    def __init__(
        self,
        *,
        build: Mapping[str, Any] | str | None = None,
        references: str | Sequence[str] | None = None,
        digest: str | None = None,
        registry_conn_id: str | None = None,
        docker_config: str | None = None,
        docker_config_secret: str | None = None,
        namespace: str | None = None,
        kubernetes_conn_id: str | None = "kubernetes_default",
        insecure_registries: Sequence[str] | None = None,
        ca_bundle: str | None = None,
        expected_platforms: Sequence[str] | None = None,
        expected_labels: Mapping[str, str] | Sequence[str] | None = None,
        request_timeout: float = 30.0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("mode", "reschedule")
        kwargs.setdefault("poke_interval", 15)
        super().__init__(**kwargs)
        self._set_verify_fields(
            build=build,
            references=references,
            digest=digest,
            registry_conn_id=registry_conn_id,
            docker_config=docker_config,
            docker_config_secret=docker_config_secret,
            namespace=namespace,
            kubernetes_conn_id=kubernetes_conn_id,
            insecure_registries=insecure_registries,
            ca_bundle=ca_bundle,
            expected_platforms=expected_platforms,
            expected_labels=expected_labels,
            request_timeout=request_timeout,
        )

    @fail_without_retry_on_bad_input()
    def poke(self, context: Context) -> PokeReturnValue | bool:
        references, verdict = self._check(self.log)
        if verdict.ok:
            return PokeReturnValue(is_done=True, xcom_value=verified_result(references, verdict))
        if verdict.retryable:
            self.log.info("not yet: %s", verdict.message)
            return False
        raise AirflowFailException(verdict.message)
