"""KanikoVerifyOperator: prove that every destination of a build is in its registry.

kaniko writes its digest before it pushes, so the build's XCom is a claim, not a proof.
This operator asks each registry (``registry.RegistryClient``) and lets
``verification.verify`` decide; it adds only Airflow plumbing: templated fields, where
credentials come from (an Airflow connection, a docker config file, or the
dockerconfigjson Secret the build mounted, read through ``cluster.py``), and which
Airflow exception a failure becomes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_kaniko.errors import InvalidInputError, VerificationError
from airflow_kaniko.operators._bad_input import fail_without_retry_on_bad_input
from airflow_kaniko.reference import ImageReference
from airflow_kaniko.registry import CredentialSource, DockerConfig, RegistryClient, chain_credentials
from airflow_kaniko.verification import Verdict, parse_labels, plan_verification, read_build_xcom, verify
from airflow_kaniko.version_compat import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["KanikoVerifyOperator", "docker_config_from_secret", "registry_credentials", "verify_images"]

_SECRET_KEYS = (".dockerconfigjson", ".dockercfg")


def docker_config_from_secret(secret: Mapping[str, Any] | None, *, name: str, namespace: str) -> str:
    """The decoded dockerconfigjson text of a Secret as the API returns it (base64 ``data``)."""
    if secret is None:
        raise InvalidInputError(f"Secret {namespace}/{name} does not exist")
    data = secret.get("data") or {}
    key = next((k for k in _SECRET_KEYS if k in data), None)
    if key is None:
        raise InvalidInputError(
            f"Secret {namespace}/{name} has no .dockerconfigjson key: expected a kubernetes.io/dockerconfigjson Secret"
        )
    try:
        return base64.b64decode(data[key], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, TypeError):
        raise InvalidInputError(f"Secret {namespace}/{name}: {key} is not base64-encoded JSON") from None


def registry_credentials(
    *,
    registry_conn_id: str | None = None,
    docker_config: str | None = None,
    docker_config_secret: str | None = None,
    namespace: str | None = None,
    kubernetes_conn_id: str | None = "kubernetes_default",
) -> CredentialSource | None:
    """Credentials from every source given, in this order: connection, file, Secret."""
    sources: list[CredentialSource] = []
    if registry_conn_id:
        from airflow_kaniko.hooks import docker_config_from_connection

        sources.append(
            DockerConfig.from_json(
                docker_config_from_connection(registry_conn_id),
                source=f"Airflow connection {registry_conn_id!r}",
            )
        )
    if docker_config:
        sources.append(DockerConfig.from_file(docker_config))
    if docker_config_secret:
        if not namespace:
            raise InvalidInputError(f"docker_config_secret {docker_config_secret!r} needs a namespace")
        from airflow_kaniko.hooks import KanikoClusterHook

        cluster = KanikoClusterHook(kubernetes_conn_id=kubernetes_conn_id).sync_cluster()
        text = docker_config_from_secret(
            cluster.read_secret(namespace, docker_config_secret),
            name=docker_config_secret,
            namespace=namespace,
        )
        sources.append(DockerConfig.from_json(text, source=f"Secret {namespace}/{docker_config_secret}"))
    return chain_credentials(*sources) if sources else None


def verify_images(
    references: Sequence[ImageReference],
    *,
    digest: str | None,
    credentials: CredentialSource | None,
    insecure_registries: Sequence[str] = (),
    ca_bundle: str | None = None,
    expected_platforms: Sequence[str] | None = None,
    expected_labels: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    log: Any = None,
) -> Verdict:
    """Ask the registries, then let ``verification.verify`` decide. Shared with the sensor."""
    with RegistryClient(
        credentials=credentials, insecure_registries=insecure_registries, ca_bundle=ca_bundle, timeout=timeout
    ) as client:
        answers = client.inspect_all(
            references, platforms=bool(expected_platforms), labels=bool(expected_labels)
        )
    for answer in answers:
        if log is not None:
            log.info("%s: %s %s", answer.reference, answer.outcome.value, answer.digest or answer.detail)
    return verify(
        reported_digest=digest,
        answers=answers,
        expected_platforms=expected_platforms,
        expected_labels=expected_labels,
    )


def verified_result(references: Sequence[ImageReference], verdict: Verdict) -> dict[str, Any]:
    return {
        "image": str(references[0].with_digest(verdict.digest)) if verdict.digest else None,
        "digest": verdict.digest,
        "verified": [str(reference) for reference in references],
    }


VERIFY_TEMPLATE_FIELDS: tuple[str, ...] = (
    "build",
    "references",
    "digest",
    "docker_config",
    "docker_config_secret",
    "registry_conn_id",
    "namespace",
    "insecure_registries",
    "expected_platforms",
    "expected_labels",
)
VERIFY_TEMPLATE_RENDERERS: dict[str, str] = {"build": "json", "references": "json", "expected_labels": "json"}


class _VerifyFields:
    """The arguments the operator and the sensor share; their template fields are VERIFY_TEMPLATE_FIELDS."""

    build: Mapping[str, Any] | str | None
    references: str | Sequence[str] | None
    digest: str | None
    registry_conn_id: str | None
    docker_config: str | None
    docker_config_secret: str | None
    namespace: str | None
    kubernetes_conn_id: str | None
    insecure_registries: Sequence[str]
    ca_bundle: str | None
    expected_platforms: Sequence[str] | None
    expected_labels: Mapping[str, str] | Sequence[str] | None
    request_timeout: float

    def _set_verify_fields(
        self,
        *,
        build: Mapping[str, Any] | str | None,
        references: str | Sequence[str] | None,
        digest: str | None,
        registry_conn_id: str | None,
        docker_config: str | None,
        docker_config_secret: str | None,
        namespace: str | None,
        kubernetes_conn_id: str | None,
        insecure_registries: Sequence[str] | None,
        ca_bundle: str | None,
        expected_platforms: Sequence[str] | None,
        expected_labels: Mapping[str, str] | Sequence[str] | None,
        request_timeout: float,
    ) -> None:
        if build is None and not references:
            raise InvalidInputError("give build (the build operator's XCom) or references to verify")
        self.build = build
        self.references = references
        self.digest = digest
        self.registry_conn_id = registry_conn_id
        self.docker_config = docker_config
        self.docker_config_secret = docker_config_secret
        self.namespace = namespace
        self.kubernetes_conn_id = kubernetes_conn_id
        self.insecure_registries = insecure_registries or []  # may be an XComArg until rendered
        self.ca_bundle = ca_bundle
        self.expected_platforms = expected_platforms
        self.expected_labels = expected_labels
        self.request_timeout = request_timeout

    def _check(self, log: Any) -> tuple[list[ImageReference], Verdict]:
        references, digest = plan_verification(
            build=self.build, references=self.references, digest=self.digest
        )
        labels = parse_labels(self.expected_labels)
        namespace = self.namespace
        if not namespace and self.build:
            namespace = read_build_xcom(self.build).get("namespace")
        credentials = registry_credentials(
            registry_conn_id=self.registry_conn_id,
            docker_config=self.docker_config,
            docker_config_secret=self.docker_config_secret,
            namespace=namespace,
            kubernetes_conn_id=self.kubernetes_conn_id,
        )
        verdict = verify_images(
            references,
            digest=digest,
            credentials=credentials,
            insecure_registries=self.insecure_registries,
            ca_bundle=self.ca_bundle,
            expected_platforms=list(self.expected_platforms) if self.expected_platforms else None,
            expected_labels=labels or None,
            timeout=self.request_timeout,
            log=log,
        )
        return references, verdict


class KanikoVerifyOperator(_VerifyFields, BaseOperator):
    """Check that every destination resolves, in its registry, to the digest the build reported.

    Returns (XCom) ``{image, digest, verified}``: ``image`` is the first reference by digest.

    :param build: the build operator's XCom (``build_task.output`` or a template);
        ``destinations`` and ``digest`` are read from it.
    :param references: image references to check instead of the XCom's destinations.
    :param digest: the digest every reference must resolve to (overrides the XCom's).
    :param registry_conn_id: an Airflow connection: host = registry, login, password.
    :param docker_config: path of a docker config.json (credHelpers are used when installed).
    :param docker_config_secret: a kubernetes.io/dockerconfigjson Secret (e.g. the one the build
        mounted), read from ``namespace`` (default: the XCom's) with ``kubernetes_conn_id``.
    :param insecure_registries: registries that serve plain HTTP or an unverified certificate:
        ``host:port`` (unverified HTTPS, then HTTP), ``http://host:port`` or ``https://host:port``.
    :param ca_bundle: a CA certificate file to trust in addition to the system's.
    :param expected_platforms: the exact platforms of the image (``linux/amd64``, ...).
    :param expected_labels: labels every image config must carry, ``{"key": "value"}``.

    Refused credentials, TLS failures, wrong platforms or labels fail the task without
    retries (waiting does not fix them); a missing tag or another digest raise
    VerificationError, and a registry that cannot be reached RegistryError, so the task's
    retries apply. For registries that show a push late, use RegistryImageSensor.
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
    def execute(self, context: Context) -> dict[str, Any]:
        references, verdict = self._check(self.log)
        if verdict.ok:
            self.log.info("verified %s: %s", ", ".join(map(str, references)), verdict.digest)
            return verified_result(references, verdict)
        if not verdict.retryable:
            raise AirflowFailException(verdict.message)
        verdict.raise_for_problems()  # VerificationError or RegistryError: the task's retries apply
        raise VerificationError(verdict.message)  # not reached: the verdict is not ok
