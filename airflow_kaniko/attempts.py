"""Retry without duplicate builds: what to do with the Jobs a task instance already has. Pure.

Jobs are found by the task instance's build key (a label), so the cluster itself remembers
them: no task_state_store is needed and it works on every Airflow 3.x.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from airflow_kaniko.cluster import BuildSnapshot
from airflow_kaniko.status import BuildPhase, BuildStatus, StuckPolicy, build_status

__all__ = ["Action", "AttemptDecision", "decide_attempt"]


class Action(StrEnum):
    CREATE = "create"  # no usable Job: start a new one
    REATTACH = "reattach"  # a Job of this task instance is still running: wait for it
    DONE = "done"  # a Job of this task instance already succeeded: return its result
    FAIL = "fail"  # this very try already ran and failed: report that, do not rebuild


@dataclass(frozen=True, kw_only=True)
class AttemptDecision:
    action: Action
    job_name: str
    status: BuildStatus | None = None


def decide_attempt(
    existing: Sequence[BuildSnapshot],
    *,
    job_name_for_try: str,
    now: datetime | None = None,
    policy: StuckPolicy | None = None,
) -> AttemptDecision:
    """Succeeded beats running beats this try's own failure; otherwise create this try's Job.

    A re-run of the same try (worker crash, re-queue) finds its Job by name; a new try after a
    failed one gets a new name, so it starts a new Job.
    """
    judged = []
    for snap in existing:
        if snap.job is None or (snap.job.get("metadata") or {}).get("deletionTimestamp"):
            continue
        status = build_status(snap.job, snap.pods, now=now, policy=policy)
        judged.append(
            (snap.job["metadata"]["name"], str(snap.job["metadata"].get("creationTimestamp", "")), status)
        )
    judged.sort(key=lambda item: item[1], reverse=True)
    for name, _, status in judged:
        if status.phase is BuildPhase.SUCCEEDED:
            return AttemptDecision(action=Action.DONE, job_name=name, status=status)
    for name, _, status in judged:
        if status.phase is BuildPhase.RUNNING:
            return AttemptDecision(action=Action.REATTACH, job_name=name, status=status)
    for name, _, status in judged:
        if name == job_name_for_try:
            return AttemptDecision(action=Action.FAIL, job_name=name, status=status)
    return AttemptDecision(action=Action.CREATE, job_name=job_name_for_try)
