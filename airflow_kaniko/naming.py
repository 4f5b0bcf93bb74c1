"""Deterministic Job names and label/annotation values for a build attempt. Pure."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["LABEL_PREFIX", "BuildIdentity", "build_key", "job_name", "label_safe"]

LABEL_PREFIX = "airflow-kaniko.io"
_NOT_NAME = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, kw_only=True)
class BuildIdentity:
    """Which Airflow task instance a build belongs to."""

    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1
    try_number: int = 1


def build_key(identity: BuildIdentity) -> str:
    """A short stable hash of (dag_id, task_id, run_id, map_index): the same for every try."""
    raw = "\x00".join((identity.dag_id, identity.task_id, identity.run_id, str(identity.map_index)))
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def job_name(identity: BuildIdentity) -> str:
    """``kaniko-<task slug>-<build key>-<try>``: a DNS-1123 label of at most 63 characters.

    The key makes the name unique per task instance; the try number lets a new try start a new
    Job after a failed one, while a re-run of the same try finds the Job it created.
    """
    suffix = f"-{build_key(identity)}-{identity.try_number}"
    slug = _NOT_NAME.sub("-", identity.task_id.lower()).strip("-")
    room = 63 - len("kaniko-") - len(suffix)
    slug = slug[:room].strip("-")
    return f"kaniko-{slug}{suffix}" if slug else f"kaniko{suffix}"


def label_safe(value: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric at both ends) that still reads like ``value``.

    The full value always goes into an annotation; the label is for selecting and reading.
    """
    cleaned = _NOT_LABEL.sub("_", value)
    if len(cleaned) > 63:
        digest = hashlib.sha256(value.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[:54]}-{digest}"
    return cleaned.strip("._-")
