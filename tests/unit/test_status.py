"""build_status: one function decides how a build stands, from a Job and its pods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from airflow_kaniko.attempts import Action, decide_attempt
from airflow_kaniko.cluster import BuildSnapshot
from airflow_kaniko.status import BuildPhase, Reason, StuckPolicy, build_status, parse_digest

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "cd" * 32


def job(
    name: str = "j",
    conditions: list[dict[str, str]] | None = None,
    created: str = "2026-12-03T11:00:00Z",
    **status: Any,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"conditions": conditions or [], **status},
    }


def pod(
    name: str, phase: str, state: dict[str, Any], *, created: str = "2026-12-03T11:00:00Z", **extra: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"phase": phase, "containerStatuses": [{"name": "kaniko", "state": state}], **extra},
    }


def cond(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, str]:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def test_complete_job_yields_digest_from_termination_message() -> None:
    s = build_status(
        job(conditions=[cond("Complete")]),
        [pod("p", "Succeeded", {"terminated": {"exitCode": 0, "message": DIGEST + "\n"}})],
        now=NOW,
    )
    assert (s.phase, s.digest, s.pod_name) == (BuildPhase.SUCCEEDED, DIGEST, "p")


def test_condition_status_string_false_is_not_complete() -> None:
    # the cncf provider's is_job_complete treats the string "False" as true; this must not
    s = build_status(
        job(conditions=[cond("Complete", status="False")]), [pod("p", "Running", {"running": {}})], now=NOW
    )
    assert s.phase is BuildPhase.RUNNING


def test_complete_without_digest_is_a_failure_not_a_success() -> None:
    s = build_status(
        job(conditions=[cond("Complete")]),
        [pod("p", "Succeeded", {"terminated": {"exitCode": 0, "message": ""}})],
        now=NOW,
    )
    assert (s.phase, s.reason) == (BuildPhase.FAILED, Reason.NO_DIGEST)


def test_failed_job_reports_reason_exit_code_and_log_tail_of_latest_pod() -> None:
    pods = [
        pod(
            "old",
            "Failed",
            {"terminated": {"exitCode": 1, "reason": "Error", "message": "first"}},
            created="2026-12-03T11:00:00Z",
        ),
        pod(
            "new",
            "Failed",
            {"terminated": {"exitCode": 3, "reason": "Error", "message": "RUN false: exit 3"}},
            created="2026-12-03T11:05:00Z",
        ),
    ]
    s = build_status(job(conditions=[cond("Failed", reason="BackoffLimitExceeded")], failed=2), pods, now=NOW)
    assert (s.phase, s.reason, s.exit_code, s.pod_name, s.failed_attempts) == (
        BuildPhase.FAILED,
        Reason.BACKOFF_LIMIT_EXCEEDED,
        3,
        "new",
        2,
    )
    assert "RUN false: exit 3" in s.message


def test_deadline_exceeded() -> None:
    s = build_status(
        job(
            conditions=[
                cond(
                    "Failed",
                    reason="DeadlineExceeded",
                    message="Job was active longer than specified deadline",
                )
            ]
        ),
        [],
        now=NOW,
    )
    assert s.reason is Reason.DEADLINE_EXCEEDED and "deadline" in s.message


def test_failed_pod_while_job_retries_is_still_running_with_a_note() -> None:
    pods = [
        pod(
            "a", "Failed", {"terminated": {"exitCode": 1, "message": "flaky"}}, created="2026-12-03T11:00:00Z"
        ),
        pod("b", "Running", {"running": {}}, created="2026-12-03T11:01:00Z"),
    ]
    s = build_status(job(failed=1), pods, now=NOW)
    assert s.phase is BuildPhase.RUNNING and s.pod_name == "b" and "flaky" in s.message


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("ImagePullBackOff", Reason.IMAGE_PULL),
        ("ErrImagePull", Reason.IMAGE_PULL),
        ("CreateContainerConfigError", Reason.CONTAINER_CONFIG),
    ],
)
def test_fatal_waiting_reasons_are_stuck_at_once(reason: str, expected: Reason) -> None:
    s = build_status(
        job(), [pod("p", "Pending", {"waiting": {"reason": reason, "message": "detail"}})], now=NOW
    )
    assert (s.phase, s.reason) == (BuildPhase.STUCK, expected)
    assert "detail" in s.message


def test_unschedulable_only_after_the_grace_period() -> None:
    def unschedulable(since: datetime) -> dict[str, Any]:
        p = pod("p", "Pending", {})
        p["status"]["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/3 nodes are available",
                "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ]
        return p

    policy = StuckPolicy(unschedulable_seconds=60)
    assert (
        build_status(job(), [unschedulable(NOW - timedelta(seconds=30))], now=NOW, policy=policy).phase
        is BuildPhase.RUNNING
    )
    s = build_status(job(), [unschedulable(NOW - timedelta(seconds=90))], now=NOW, policy=policy)
    assert (s.phase, s.reason) == (BuildPhase.STUCK, Reason.UNSCHEDULABLE) and "0/3 nodes" in s.message


def test_missing_job() -> None:
    assert build_status(None, [], now=NOW).reason is Reason.JOB_NOT_FOUND


def test_parse_digest_only_accepts_a_digest() -> None:
    assert parse_digest(f" {DIGEST}\n") == DIGEST
    assert parse_digest("error building image") is None
    assert parse_digest(None) is None


def snap(j: dict[str, Any], pods: list[dict[str, Any]]) -> BuildSnapshot:
    return BuildSnapshot(job=j, pods=pods)


def test_attempt_decisions() -> None:
    ok = snap(
        job("t1", [cond("Complete")]),
        [pod("p", "Succeeded", {"terminated": {"exitCode": 0, "message": DIGEST}})],
    )
    running = snap(job("t1"), [pod("p", "Running", {"running": {}})])
    failed = snap(job("t1", [cond("Failed", reason="BackoffLimitExceeded")]), [])
    assert decide_attempt([], job_name_for_try="t1").action is Action.CREATE
    assert decide_attempt([ok], job_name_for_try="t2").action is Action.DONE
    assert decide_attempt([running], job_name_for_try="t2").action is Action.REATTACH
    assert decide_attempt([failed], job_name_for_try="t1").action is Action.FAIL
    assert decide_attempt([failed], job_name_for_try="t2").action is Action.CREATE


def test_error_line_is_found_behind_usage_text() -> None:
    from airflow_kaniko.status import BuildStatus, explain, kaniko_error_line

    log = 'time="t" level=info msg="Retrieving image manifest"\nError: error resolving dockerfile path: please provide a valid path\nUsage:\n  executor [flags]\n      --build-arg multi-arg\n'
    assert kaniko_error_line(log) == "Error: error resolving dockerfile path: please provide a valid path"
    failed = BuildStatus(
        phase=BuildPhase.FAILED, reason=Reason.BACKOFF_LIMIT_EXCEEDED, message="exit code 1: Usage: ..."
    )
    assert "error resolving dockerfile path" in explain(failed, log)
    assert explain(failed, "nothing to see") == failed.message
