"""The one function that says how a build stands, from a Job and its pods (plain API dicts).

The operator, the trigger, the sensor and the CLI all call ``build_status``; none of them
reads Job conditions or container states on its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_STUCK_POLICY",
    "BuildPhase",
    "BuildStatus",
    "CleanupPolicy",
    "Reason",
    "StuckPolicy",
    "build_status",
    "explain",
    "kaniko_error_line",
    "parse_digest",
    "should_delete",
    "status_from_event",
    "status_to_event",
]

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
KANIKO_CONTAINER = "kaniko"
# Waiting reasons that will not resolve by waiting: the pod can never start as specified.
_FATAL_WAITING = {
    "ImagePullBackOff": "the executor image cannot be pulled",
    "ErrImagePull": "the executor image cannot be pulled",
    "InvalidImageName": "the executor image name is invalid",
    "CreateContainerConfigError": "a Secret or ConfigMap the pod needs is missing",
    "CreateContainerError": "the container runtime could not create the container",
}


class BuildPhase(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    STUCK = "stuck"

    @property
    def finished(self) -> bool:
        return self is not BuildPhase.RUNNING


class Reason(StrEnum):
    """Why a build is where it is; stable strings, also carried in trigger events."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    JOB_NOT_FOUND = "JobNotFound"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    POD_FAILURE_POLICY = "PodFailurePolicy"
    JOB_FAILED = "JobFailed"
    NO_DIGEST = "NoDigest"
    IMAGE_PULL = "ImagePullBackOff"
    CONTAINER_CONFIG = "CreateContainerConfigError"
    CONTAINER_CREATE = "CreateContainerError"
    UNSCHEDULABLE = "Unschedulable"
    CONTAINER_CREATING = "ContainerCreating"


@dataclass(frozen=True, kw_only=True)
class StuckPolicy:
    """How long a pod may wait before it counts as stuck."""

    unschedulable_seconds: float = 120.0
    # A missing Secret/ConfigMap/PVC *volume* leaves a pod in ContainerCreating with only an event.
    container_creating_seconds: float = 300.0


@dataclass(frozen=True, kw_only=True)
class BuildStatus:
    phase: BuildPhase
    reason: Reason
    message: str = ""
    digest: str | None = None
    pod_name: str | None = None
    exit_code: int | None = None
    failed_attempts: int = 0

    @property
    def finished(self) -> bool:
        return self.phase.finished


def parse_digest(message: str | None) -> str | None:
    """kaniko's --digest-file content: exactly ``sha256:<64 hex>`` (whitespace tolerated)."""
    text = (message or "").strip()
    return text if _DIGEST.match(text) else None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or ():
        # The API gives the status as the strings "True"/"False"/"Unknown": compare, never truth-test.
        if cond.get("type") == kind and cond.get("status") == "True":
            return dict(cond)
    return None


def _kaniko_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or ():
        if cs.get("name") == KANIKO_CONTAINER:
            return dict(cs)
    return {}


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    state = _kaniko_status(pod).get("state") or {}
    terminated = state.get("terminated")
    return dict(terminated) if terminated else None


def _pod_age_key(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


def _describe_failure(pod: Mapping[str, Any]) -> tuple[str, int | None]:
    """'exit code 3 (Error): <last log lines>' from the pod's kaniko container."""
    term = _terminated(pod)
    if term is None:
        status = pod.get("status") or {}
        text = status.get("message") or status.get("reason") or "the pod failed before kaniko ran"
        return str(text), None
    code = term.get("exitCode")
    reason = term.get("reason") or "Error"
    if reason == "OOMKilled":
        head = f"kaniko was OOMKilled (exit code {code}): raise resources.limits.memory"
    else:
        head = f"kaniko exited with code {code} ({reason})"
    tail = (term.get("message") or "").strip()
    return (f"{head}: {tail}" if tail else head), code


def _stuck(pod: Mapping[str, Any], now: datetime, policy: StuckPolicy) -> tuple[Reason, str] | None:
    name = (pod.get("metadata") or {}).get("name")
    waiting = (_kaniko_status(pod).get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason")
    if reason in _FATAL_WAITING:
        detail = waiting.get("message") or ""
        enum = {
            "ImagePullBackOff": Reason.IMAGE_PULL,
            "ErrImagePull": Reason.IMAGE_PULL,
            "InvalidImageName": Reason.IMAGE_PULL,
            "CreateContainerConfigError": Reason.CONTAINER_CONFIG,
            "CreateContainerError": Reason.CONTAINER_CREATE,
        }[reason]
        return enum, f"pod {name} is stuck in {reason}: {_FATAL_WAITING[reason]}. {detail}".strip()
    scheduled = next(
        (c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") == "PodScheduled"),
        None,
    )
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        since = _parse_time(scheduled.get("lastTransitionTime"))
        if since is not None and (now - since).total_seconds() >= policy.unschedulable_seconds:
            return Reason.UNSCHEDULABLE, (
                f"pod {name} could not be scheduled for {policy.unschedulable_seconds:.0f}s: "
                f"{scheduled.get('message') or 'no node fits'}"
            )
    if reason == "ContainerCreating":
        started = _parse_time((pod.get("status") or {}).get("startTime"))
        if started is not None and (now - started).total_seconds() >= policy.container_creating_seconds:
            return Reason.CONTAINER_CREATING, (
                f"pod {name} has been creating its container for {policy.container_creating_seconds:.0f}s: "
                "a volume (Secret, ConfigMap or PersistentVolumeClaim) is probably missing; see its events"
            )
    return None


def build_status(
    job: Mapping[str, Any] | None,
    pods: Sequence[Mapping[str, Any]],
    *,
    now: datetime | None = None,
    policy: StuckPolicy | None = None,
) -> BuildStatus:
    """Decide running / succeeded(digest) / failed(reason, message) / stuck(reason)."""
    now = now or datetime.now(UTC)
    policy = policy or StuckPolicy()
    if job is None:
        return BuildStatus(
            phase=BuildPhase.FAILED,
            reason=Reason.JOB_NOT_FOUND,
            message="the build Job does not exist (deleted?)",
        )
    newest_first = sorted(pods, key=_pod_age_key, reverse=True)
    failed_pods = [p for p in newest_first if (p.get("status") or {}).get("phase") == "Failed"]
    failed_attempts = int((job.get("status") or {}).get("failed") or len(failed_pods))

    if _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet"):
        succeeded = next(
            (p for p in newest_first if (p.get("status") or {}).get("phase") == "Succeeded"), None
        )
        if succeeded is None and newest_first:
            # The Job's event can arrive before its pod's: wait for the pod to say Succeeded.
            return BuildStatus(
                phase=BuildPhase.RUNNING,
                reason=Reason.RUNNING,
                pod_name=newest_first[0]["metadata"]["name"],
                failed_attempts=failed_attempts,
            )
        if succeeded is None:
            return BuildStatus(
                phase=BuildPhase.FAILED,
                reason=Reason.NO_DIGEST,
                failed_attempts=failed_attempts,
                message="the Job completed but its pod is gone, so the digest kaniko reported cannot be read",
            )
        term = _terminated(succeeded) or {}
        digest = parse_digest(term.get("message"))
        pod_name = succeeded["metadata"]["name"]
        if digest is None:
            return BuildStatus(
                phase=BuildPhase.FAILED,
                reason=Reason.NO_DIGEST,
                pod_name=pod_name,
                failed_attempts=failed_attempts,
                message=f"kaniko finished but reported no digest (termination message {term.get('message')!r})",
            )
        return BuildStatus(
            phase=BuildPhase.SUCCEEDED,
            reason=Reason.COMPLETE,
            digest=digest,
            pod_name=pod_name,
            exit_code=0,
            failed_attempts=failed_attempts,
        )

    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed:
        known = {
            r.value: r
            for r in (Reason.BACKOFF_LIMIT_EXCEEDED, Reason.DEADLINE_EXCEEDED, Reason.POD_FAILURE_POLICY)
        }
        reason = known.get(str(failed.get("reason")), Reason.JOB_FAILED)
        last = failed_pods[0] if failed_pods else None
        detail, code = _describe_failure(last) if last else ("", None)
        head = f"Job failed: {failed.get('reason') or 'Failed'}"
        if failed.get("message"):
            head += f" ({failed['message']})"
        return BuildStatus(
            phase=BuildPhase.FAILED,
            reason=reason,
            message=f"{head}; {detail}" if detail else head,
            pod_name=last["metadata"]["name"] if last else None,
            exit_code=code,
            failed_attempts=failed_attempts,
        )

    active = [p for p in newest_first if (p.get("status") or {}).get("phase") not in {"Succeeded", "Failed"}]
    for pod in active:
        stuck = _stuck(pod, now, policy)
        if stuck is not None:
            return BuildStatus(
                phase=BuildPhase.STUCK,
                reason=stuck[0],
                message=stuck[1],
                pod_name=pod["metadata"]["name"],
                failed_attempts=failed_attempts,
            )
    current = active[0] if active else (newest_first[0] if newest_first else None)
    state = _kaniko_status(current).get("state") or {} if current is not None else {}
    running = bool(state.get("running") or state.get("terminated"))
    message = ""
    if failed_pods:
        detail, _ = _describe_failure(failed_pods[0])
        message = f"attempt {failed_attempts} failed, the Job retries: {detail}"
    return BuildStatus(
        phase=BuildPhase.RUNNING,
        reason=Reason.RUNNING if running else Reason.PENDING,
        message=message,
        pod_name=current["metadata"]["name"] if current else None,
        failed_attempts=failed_attempts,
    )


def status_to_event(status: BuildStatus, *, namespace: str, job_name: str) -> dict[str, Any]:
    """A JSON-safe form of ``status`` for a TriggerEvent payload."""
    return {
        "namespace": namespace,
        "job_name": job_name,
        "phase": status.phase.value,
        "reason": status.reason.value,
        "message": status.message,
        "digest": status.digest,
        "pod_name": status.pod_name,
        "exit_code": status.exit_code,
        "failed_attempts": status.failed_attempts,
    }


def status_from_event(event: Mapping[str, Any]) -> BuildStatus:
    reasons = {r.value: r for r in Reason}
    return BuildStatus(
        phase=BuildPhase(event["phase"]),
        reason=reasons.get(str(event.get("reason")), Reason.JOB_FAILED),
        message=str(event.get("message") or ""),
        digest=event.get("digest"),
        pod_name=event.get("pod_name"),
        exit_code=event.get("exit_code"),
        failed_attempts=int(event.get("failed_attempts") or 0),
    )


DEFAULT_STUCK_POLICY = StuckPolicy()


class CleanupPolicy(StrEnum):
    """What happens to a finished Job (its TTL still applies to whatever is kept)."""

    KEEP = "keep"
    DELETE_SUCCEEDED = "delete_succeeded"
    DELETE = "delete"


def should_delete(policy: CleanupPolicy, status: BuildStatus) -> bool:
    """A stuck Job is always deleted: left alone it would wait for its deadline."""
    if status.phase is BuildPhase.STUCK:
        return True
    if status.phase is BuildPhase.SUCCEEDED:
        return policy is not CleanupPolicy.KEEP
    return policy is CleanupPolicy.DELETE


_LOG_ERROR = re.compile(r"^(Error: .+|.*level=(?:error|fatal) .+)$")


def kaniko_error_line(log: str) -> str | None:
    """The last error kaniko logged: its own ``Error: ...`` line or a ``level=error|fatal`` entry.

    kaniko prints its usage text after some errors (a missing Dockerfile), which then fills the
    termination message's 2 KiB tail; the error line itself is only in the full log.
    """
    for line in reversed(log.splitlines()):
        if _LOG_ERROR.match(line.strip()):
            return line.strip()
    return None


def explain(status: BuildStatus, log: str | None) -> str:
    """The status message, plus kaniko's own error line when the message does not carry it."""
    line = kaniko_error_line(log or "") if status.phase is BuildPhase.FAILED else None
    if line and line not in status.message:
        return f"{status.message}; kaniko: {line}"
    return status.message
