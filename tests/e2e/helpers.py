"""Helpers of the kaniko end-to-end tier (the fixtures are in conftest.py)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from airflow_kaniko.build import (
    JobSettings,
    KanikoBuild,
    RenderedBuild,
    render_build,
    render_configmap,
    render_docker_config_secret,
)
from airflow_kaniko.context import CONFIGMAP_ARCHIVE_KEY
from airflow_kaniko.naming import BuildIdentity
from airflow_kaniko.packing import pack_to_bytes
from tests.support.kaniko_runner import ContainerResult, run_job_container
from tests.support.registry import OciImage, RunningRegistry

__all__ = [
    "BUSYBOX",
    "DOCKER_CONFIG_SECRET",
    "BuildRun",
    "RunBuild",
    "run_rendered_build",
    "write_busybox_layout",
    "write_context",
]

DOCKER_CONFIG_SECRET = "registry-credentials"

BUSYBOX = Path("/bin/busybox")
# Applets the base image links to busybox (a static binary: nothing else is needed).
_APPLETS = (
    "sh",
    "echo",
    "cat",
    "mkdir",
    "ls",
    "true",
    "false",
    "env",
    "head",
    "wc",
    "sleep",
    "printf",
    "dd",
    "sha256sum",
    "seq",
    "gzip",
    "tar",
    "rm",
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _blob(layout: Path, data: bytes) -> str:
    digest = _sha256(data)
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def _busybox_layer() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, *, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.size, info.linkname = kind, mode, 0, len(data), link
            tar.addfile(info, io.BytesIO(data) if data else None)

        for directory, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777)):
            add(directory, kind=tarfile.DIRTYPE, mode=mode)
        add("bin/busybox", kind=tarfile.REGTYPE, mode=0o755, data=BUSYBOX.read_bytes())
        for applet in _APPLETS:
            add(f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777, link="busybox")
        add("etc/passwd", kind=tarfile.REGTYPE, mode=0o644, data=b"root:x:0:0:root:/root:/bin/sh\n")
        add("etc/group", kind=tarfile.REGTYPE, mode=0o644, data=b"root:x:0:\n")
    return raw.getvalue()


def write_busybox_layout(layout: Path, *, tag: str) -> OciImage:
    """An OCI image layout whose one layer is a root made from /bin/busybox (busybox-static)."""
    layout.mkdir(parents=True, exist_ok=True)
    tar = _busybox_layer()
    layer = gzip.compress(tar, mtime=0)
    layer_digest = _blob(layout, layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2026-01-01T00:00:00Z",
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["sh"],
            },
            "rootfs": {"type": "layers", "diff_ids": [_sha256(tar)]},
            "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "busybox-static root"}],
        },
        sort_keys=True,
    ).encode()
    config_digest = _blob(layout, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        },
        sort_keys=True,
    ).encode()
    digest = _blob(layout, manifest)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest,
                        "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": tag},
                    }
                ],
            }
        )
    )
    return OciImage(
        layout=layout,
        tag=tag,
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        manifest=manifest,
        config_digests=(config_digest,),
    )


@dataclass
class BuildRun:
    """One build: the Job as rendered, the objects created with it, what the container did."""

    rendered: RenderedBuild
    objects: list[dict[str, Any]]
    result: ContainerResult

    @property
    def log(self) -> str:
        return _ANSI.sub("", self.result.log)

    @property
    def args(self) -> list[str]:
        return list(self.rendered.job["spec"]["template"]["spec"]["containers"][0]["args"])


RunBuild = Callable[..., BuildRun]


def run_rendered_build(
    build: KanikoBuild,
    *,
    executor: Path,
    registry: RunningRegistry,
    workdir: Path,
    context_dir: Path,
    docker_config_json: str | None = None,
    settings: JobSettings | None = None,
    run_id: str | None = None,
    pvc_claim: str | None = None,
) -> BuildRun:
    """Render the Job for ``build`` with ``render_build`` and run its kaniko container.

    The context directory is packed (``airflow_kaniko.packing``) into the ConfigMap the operator
    would create, or, with ``pvc_claim``, mounted as that claim (a host directory); the registry
    credentials go into the dockerconfigjson Secret the Job mounts.
    """
    settings = settings or JobSettings(docker_config_secret=DOCKER_CONFIG_SECRET)
    identity = BuildIdentity(dag_id="e2e", task_id="build", run_id=run_id or f"run-{uuid.uuid4().hex[:8]}")
    source = f"pvc://{pvc_claim}" if pvc_claim else f"local://{context_dir}"
    build = replace(build, context=source)
    rendered = render_build(build, settings, identity)
    job = rendered.job
    job["metadata"]["uid"] = str(uuid.uuid4())  # as the API server would set it
    objects: list[dict[str, Any]] = []
    host_paths: dict[str, Path] = {}
    if pvc_claim is None:
        # What the operator does for local:// sources: pack, then a ConfigMap the Job owns.
        archive, _ = pack_to_bytes(context_dir, dockerfile=build.dockerfile)
        objects.append(render_configmap(job, archive=archive, key=CONFIGMAP_ARCHIVE_KEY))
    else:
        host_paths[pvc_claim] = context_dir
    if settings.docker_config_secret:
        config = docker_config_json if docker_config_json is not None else registry.docker_config_json()
        objects.append(
            render_docker_config_secret(job, name=settings.docker_config_secret, docker_config_json=config)
        )
    result = run_job_container(
        job,
        executor=executor,
        workdir=workdir,
        objects=objects,
        host_paths=host_paths,
        ca_certs=[registry.ca_cert] if registry.ca_cert else [],
    )
    return BuildRun(rendered=rendered, objects=objects, result=result)


def write_context(directory: Path, files: Mapping[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return directory
