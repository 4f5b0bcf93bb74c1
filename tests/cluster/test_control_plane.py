"""The control plane and kwok's stages behave as the operator tests rely on.

Hand-made Jobs and pods only (no airflow_kaniko code): if one of these fails, the operator
tests on this tier cannot be trusted either.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from tests.support.control_plane import (
    ControlPlane,
    Kwok,
    PodControls,
    dump,
    job_condition,
    job_finished,
    pods_of_job,
    wait_until,
)

DIGEST = "sha256:" + "ab" * 32
IMAGE = "ghcr.io/osscontainertools/kaniko:v1.28.0"


def make_job(
    name: str,
    controls: PodControls,
    *,
    backoff_limit: int = 0,
    active_deadline_seconds: int | None = None,
    node_selector: dict[str, str] | None = None,
) -> client.V1Job:
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=backoff_limit,
            active_deadline_seconds=active_deadline_seconds,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=controls.labels, annotations=controls.annotations),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    automount_service_account_token=False,
                    node_selector=node_selector,
                    containers=[
                        client.V1Container(
                            name="kaniko",
                            image=IMAGE,
                            args=["--context=dir:///workspace", "--digest-file=/dev/termination-log"],
                            termination_message_policy="FallbackToLogsOnError",
                        )
                    ],
                ),
            ),
        ),
    )


def make_pod(
    name: str, controls: PodControls, *, node_selector: dict[str, str] | None = None
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=controls.labels, annotations=controls.annotations),
        spec=client.V1PodSpec(
            restart_policy="Never",
            automount_service_account_token=False,
            node_selector=node_selector,
            containers=[client.V1Container(name="kaniko", image=IMAGE)],
        ),
    )


def wait_pod(core_v1: Any, namespace: str, name: str, what: str, check: Any, timeout: float = 60) -> Any:
    def probe() -> Any:
        pod = core_v1.read_namespaced_pod(name, namespace)
        return pod if check(pod) else None

    try:
        return wait_until(f"pod {namespace}/{name}: {what}", probe, timeout=timeout)
    except Exception:
        print(dump(core_v1.read_namespaced_pod(name, namespace)))
        raise


def test_nodes_are_ready_and_schedulable(core_v1: Any, control_plane: ControlPlane) -> None:
    nodes = core_v1.list_node().items
    assert sorted(n.metadata.name for n in nodes) == control_plane.node_names
    for node in nodes:
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "True"
        assert not node.spec.taints
        assert node.status.allocatable["pods"]


def test_version_is_the_built_one(k8s_client: Any) -> None:
    info = client.VersionApi(k8s_client).get_code()
    assert info.git_version == "v1.36.3"


def test_job_succeeds_with_termination_message(core_v1: Any, batch_v1: Any, namespace: str) -> None:
    batch_v1.create_namespaced_job(namespace, make_job("ok", Kwok.succeed(message=DIGEST, delay="1s")))

    job = wait_until("Job ok finished", lambda: job_finished(batch_v1, namespace, "ok"))

    assert job_condition(job, "Complete").status == "True", dump(job)
    assert job.status.succeeded == 1
    (pod,) = pods_of_job(core_v1, namespace, "ok")
    assert pod.status.phase == "Succeeded"
    (status,) = pod.status.container_statuses
    terminated = status.state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (0, "Completed", DIGEST)
    assert terminated.started_at <= terminated.finished_at


def test_job_without_controls_succeeds(core_v1: Any, batch_v1: Any, namespace: str) -> None:
    batch_v1.create_namespaced_job(namespace, make_job("plain", PodControls()))

    job = wait_until("Job plain finished", lambda: job_finished(batch_v1, namespace, "plain"))

    assert job_condition(job, "Complete").status == "True", dump(job)
    (pod,) = pods_of_job(core_v1, namespace, "plain")
    assert pod.status.container_statuses[0].state.terminated.message is None


def test_failing_job_backs_off_then_fails(core_v1: Any, batch_v1: Any, namespace: str) -> None:
    # A message with ": " and quotes: it must survive kwok's status template.
    message = 'error building image: error resolving dockerfile path: "Dockerfile": no such file'
    controls = Kwok.fail(exit_code=2, reason="Error", message=message)
    batch_v1.create_namespaced_job(namespace, make_job("bad", controls, backoff_limit=1))

    # The real Job controller waits (10 s backoff) before the second pod.
    job = wait_until("Job bad finished", lambda: job_finished(batch_v1, namespace, "bad"), timeout=120)

    failed = job_condition(job, "Failed")
    assert failed is not None and failed.status == "True", dump(job)
    assert failed.reason == "BackoffLimitExceeded"
    assert job.status.failed == 2
    pods = pods_of_job(core_v1, namespace, "bad")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Failed"
        terminated = pod.status.container_statuses[0].state.terminated
        assert (terminated.exit_code, terminated.reason, terminated.message) == (2, "Error", message)


def test_oom_killed(core_v1: Any, namespace: str) -> None:
    core_v1.create_namespaced_pod(namespace, make_pod("oom", Kwok.oom()))

    pod = wait_pod(core_v1, namespace, "oom", "Failed", lambda p: p.status.phase == "Failed")

    terminated = pod.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")


def test_image_pull_backoff_stays_waiting(core_v1: Any, namespace: str) -> None:
    core_v1.create_namespaced_pod(namespace, make_pod("pull", Kwok.waiting()))

    pod = wait_pod(
        core_v1, namespace, "pull", "container waiting", lambda p: bool(p.status.container_statuses)
    )

    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting.reason == "ImagePullBackOff"
    assert waiting.message == f'Back-off pulling image "{IMAGE}"'
    assert pod.status.phase == "Pending"
    # Nothing moves it on: a later look sees the same state.
    time.sleep(1.5)
    again = core_v1.read_namespaced_pod("pull", namespace)
    assert again.status.phase == "Pending"
    assert again.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"


def test_waiting_with_chosen_reason(core_v1: Any, namespace: str) -> None:
    message = 'secret "registry-creds" not found'
    controls = Kwok.waiting(reason="CreateContainerConfigError", message=message)
    core_v1.create_namespaced_pod(namespace, make_pod("config", controls))

    pod = wait_pod(
        core_v1, namespace, "config", "container waiting", lambda p: bool(p.status.container_statuses)
    )

    waiting = pod.status.container_statuses[0].state.waiting
    assert (waiting.reason, waiting.message) == ("CreateContainerConfigError", message)


def test_unschedulable_pod_stays_pending(core_v1: Any, namespace: str) -> None:
    core_v1.create_namespaced_pod(
        namespace, make_pod("nowhere", PodControls(), node_selector=dict(Kwok.UNSCHEDULABLE_NODE_SELECTOR))
    )

    def unschedulable(pod: Any) -> bool:
        return any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in pod.status.conditions or []
        )

    pod = wait_pod(core_v1, namespace, "nowhere", "Unschedulable", unschedulable)

    assert pod.status.phase == "Pending"
    assert not pod.spec.node_name


def test_active_deadline_fails_a_running_job(core_v1: Any, batch_v1: Any, namespace: str) -> None:
    batch_v1.create_namespaced_job(namespace, make_job("slow", Kwok.running(), active_deadline_seconds=2))

    job = wait_until("Job slow finished", lambda: job_finished(batch_v1, namespace, "slow"))

    failed = job_condition(job, "Failed")
    assert failed is not None and failed.reason == "DeadlineExceeded", dump(job)
    # The Job controller deletes the running pod; kwok's pod-delete stage removes it.
    wait_until("pods of slow gone", lambda: True if not pods_of_job(core_v1, namespace, "slow") else None)


def test_pod_logs_are_served(control_plane: ControlPlane, core_v1: Any, namespace: str) -> None:
    lines = ["INFO[0000] Retrieving image manifest alpine:3.20", "INFO[0001] Pushed registry/app@" + DIGEST]
    control_plane.set_pod_logs(namespace, lines)
    core_v1.create_namespaced_pod(namespace, make_pod("chatty", Kwok.running()))
    wait_pod(core_v1, namespace, "chatty", "Running", lambda p: p.status.phase == "Running")

    def read() -> str | None:
        # _preload_content=False: kubernetes 36.0.x returns the repr of the bytes otherwise
        # (kubernetes-client/python#2596).
        resp = core_v1.read_namespaced_pod_log(
            "chatty", namespace, container="kaniko", _preload_content=False
        )
        return resp.data.decode() or None

    # kwok picks up the ClusterLogs object through its watch; give it a moment.
    text = wait_until("pod log served", read, timeout=30)

    assert text.splitlines() == lines


def test_deleting_a_job_removes_its_pods(core_v1: Any, batch_v1: Any, namespace: str) -> None:
    batch_v1.create_namespaced_job(namespace, make_job("gone", Kwok.running()))
    wait_until(
        "pod of gone running",
        lambda: (
            True
            if any(p.status.phase == "Running" for p in pods_of_job(core_v1, namespace, "gone"))
            else None
        ),
    )

    batch_v1.delete_namespaced_job("gone", namespace, propagation_policy="Foreground")

    def job_gone() -> bool | None:
        try:
            batch_v1.read_namespaced_job("gone", namespace)
        except client.ApiException as exc:
            return True if exc.status == 404 else None
        return None

    wait_until("Job gone deleted", job_gone)
    assert pods_of_job(core_v1, namespace, "gone") == []


def test_rbac_is_enforced_for_service_accounts(
    control_plane: ControlPlane, core_v1: Any, k8s_client: Any, namespace: str
) -> None:
    from kubernetes import config

    rbac = client.RbacAuthorizationV1Api(k8s_client)
    core_v1.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="reader"))
    )
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="pod-reader"),
            rules=[client.V1PolicyRule(api_groups=[""], resources=["pods"], verbs=["get", "list"])],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="reader"),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="pod-reader"),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name="reader", namespace=namespace)],
        ),
    )
    path = control_plane.service_account_kubeconfig(namespace, "reader")
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        sa_core = client.CoreV1Api(api)
        assert sa_core.list_namespaced_pod(namespace).items == []
        with pytest.raises(client.ApiException) as forbidden:
            sa_core.create_namespaced_pod(namespace, make_pod("nope", PodControls()))
        assert forbidden.value.status == 403
        with pytest.raises(client.ApiException) as elsewhere:
            sa_core.list_namespaced_pod("default")
        assert elsewhere.value.status == 403


def test_cluster_survives_an_apiserver_restart(
    control_plane: ControlPlane, core_v1: Any, batch_v1: Any, namespace: str
) -> None:
    batch_v1.create_namespaced_job(namespace, make_job("across", Kwok.succeed(message=DIGEST, delay="4s")))
    wait_until(
        "pod of across running",
        lambda: (
            True
            if any(p.status.phase == "Running" for p in pods_of_job(core_v1, namespace, "across"))
            else None
        ),
    )

    control_plane.restart_apiserver(down_for=1.0)

    # kwok, the Job controller and our client reconnect; the build finishes as if nothing happened.
    job = wait_until("Job across finished", lambda: job_finished(batch_v1, namespace, "across"), timeout=120)
    assert job_condition(job, "Complete").status == "True", dump(job)
    (pod,) = pods_of_job(core_v1, namespace, "across")
    assert pod.status.container_statuses[0].state.terminated.message == DIGEST
