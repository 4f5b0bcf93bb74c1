"""KanikoContextOperator: the prepare step that gets a local build context to where kaniko reads it.

It returns (as XCom) a context source string that KanikoBuildOperator accepts as ``context``:

- with ``upload_to`` (``s3://bucket/prefix``, ``gs://...``, Azure Blob ``https://...``): the
  directory is packed and uploaded, content-addressed, and the object's URL is returned;
- without: ``local:///absolute/dir``, which the build packs into a ConfigMap the Job owns. The
  directory is packed here once anyway, so a missing Dockerfile, an unreadable file or a context
  too large for a ConfigMap fails this step, not the build.

Packing and uploading live in ``packing.py`` and ``upload.py``; this class only wires them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_kaniko.context import CONFIGMAP_LIMIT_BYTES
from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.operators._bad_input import fail_without_retry_on_bad_input
from airflow_kaniko.packing import DEFAULT_COMPRESSLEVEL, pack_directory, pack_to_bytes
from airflow_kaniko.upload import object_base, upload_context

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["KanikoContextOperator"]


class KanikoContextOperator(BaseOperator):
    """Pack ``source_dir`` (honouring its .dockerignore) and return the build context reference.

    :param source_dir: the build context directory, on the worker that runs this task.
    :param dockerfile: the Dockerfile, relative to ``source_dir``; it must exist.
    :param upload_to: base URL to upload the tarball under, as ``<base>/<sha256>.tar.gz``; an
        object already there is not uploaded again. None: return ``local://<source_dir>``.
    :param conn_id: the Airflow connection ObjectStoragePath uses for ``upload_to``.
    :param compresslevel: gzip level, 0-9.
    """

    template_fields: Sequence[str] = ("source_dir", "dockerfile", "upload_to", "conn_id")
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        source_dir: str,
        dockerfile: str = "Dockerfile",
        upload_to: str | None = None,
        conn_id: str | None = None,
        compresslevel: int = DEFAULT_COMPRESSLEVEL,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.source_dir = source_dir
        self.dockerfile = dockerfile
        self.upload_to = upload_to
        self.conn_id = conn_id
        self.compresslevel = compresslevel

    @fail_without_retry_on_bad_input()
    def execute(self, context: Context) -> str:
        directory = os.path.abspath(os.fspath(self.source_dir))
        if not self.upload_to:
            _, result = pack_to_bytes(
                directory,
                dockerfile=self.dockerfile,
                level=self.compresslevel,
                max_size=CONFIGMAP_LIMIT_BYTES,
                limit_name=f"a ConfigMap ({CONFIGMAP_LIMIT_BYTES} bytes; give upload_to for larger contexts)",
            )
            self.log.info(
                "Context %s fits a ConfigMap: %d bytes packed, %d entries, sha256 %s",
                directory,
                result.size,
                result.entries,
                result.sha256,
            )
            return f"local://{directory}"

        base = object_base(self.upload_to)  # refuse a bad URL before packing anything
        if base.protocol == "file":
            raise InvalidInputError(
                f"upload_to {self.upload_to!r}: kaniko cannot read file:// contexts; use s3://, gs:// "
                "or https://ACCOUNT.blob.core.windows.net/container"
            )
        with tempfile.TemporaryDirectory(prefix="kaniko-context-") as tmp:
            archive = os.path.join(tmp, "context.tar.gz")
            packed = pack_directory(directory, archive, dockerfile=self.dockerfile, level=self.compresslevel)
            self.log.info(
                "Packed %s: %d bytes, %d entries (%d bytes of content), sha256 %s, ignore file %s",
                directory,
                packed.size,
                packed.entries,
                packed.content_bytes,
                packed.sha256,
                packed.ignore_file or "none",
            )
            uploaded = upload_context(archive, self.upload_to, sha256=packed.sha256, conn_id=self.conn_id)
        self.log.info(
            "%s %s", "Uploaded" if uploaded.uploaded else "Already there, not uploaded again:", uploaded.url
        )
        if uploaded.kaniko_url is None:  # pragma: no cover - object_base refused such storage above
            raise InvalidInputError(f"kaniko cannot read the context at {uploaded.url!r}")
        return uploaded.kaniko_url
