"""A real Kubernetes control plane on loopback for the cluster test tier.

etcd, kube-apiserver (RBAC, service-account signing), kube-controller-manager (the real Job
controller, garbage collector, ServiceAccount controllers), kube-scheduler and kwok (the node
agent that plays pod lifecycles from the Stage objects in ``tests/cluster/kwok/stages.yaml``).
The binaries come from ``scripts/build-control-plane.sh`` (built from Go modules, cached under
``~/.cache/airflow-kaniko``). Nothing here fakes the API: tests talk to a real kube-apiserver.

Every process writes its log to ``<workdir>/logs/<name>.log``; when start-up fails, the tails of
those logs are printed so the failure says why.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.support import pki

__all__ = [
    "BUILD_SCRIPT",
    "STAGES_FILE",
    "ControlPlane",
    "ControlPlaneError",
    "Kwok",
    "PodControls",
    "build_control_plane",
    "dump",
    "go_missing_reason",
    "job_condition",
    "job_finished",
    "pods_of_job",
    "running_control_plane",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-control-plane.sh"
STAGES_FILE = REPO_ROOT / "tests" / "cluster" / "kwok" / "stages.yaml"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"
CONTROL_PLANE_AGENT = "airflow-kaniko-test-control-plane"

T = TypeVar("T")


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


# --------------------------------------------------------------------------------------------
# Test controls: what the Stage objects in tests/cluster/kwok/stages.yaml read from a pod.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodControls:
    """Labels and annotations to put on a pod template so kwok plays one outcome."""

    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)


class Kwok:
    """Names of the pod-template controls read by ``tests/cluster/kwok/stages.yaml``.

    Keep in step with the comment at the top of that file.
    """

    OUTCOME = "kwok.airflow-kaniko.test/outcome"  # label
    SUCCEED = "succeed"  # (or no label) Job-owned pods end Succeeded, exit 0
    FAIL = "fail"  # terminated with EXIT_CODE / REASON / MESSAGE, phase Failed
    OOM = "oom"  # terminated OOMKilled, exit 137, phase Failed
    WAITING = "waiting"  # Pending, container waiting (ImagePullBackOff by default)
    RUNNING = "running"  # Running for ever (deadline and kill tests)

    TERMINATION_MESSAGE = "kwok.airflow-kaniko.test/termination-message"  # succeed
    DELAY = "kwok.airflow-kaniko.test/delay"  # Go duration before terminating
    EXIT_CODE = "kwok.airflow-kaniko.test/exit-code"  # fail
    REASON = "kwok.airflow-kaniko.test/reason"  # fail
    MESSAGE = "kwok.airflow-kaniko.test/message"  # fail
    WAITING_REASON = "kwok.airflow-kaniko.test/waiting-reason"  # waiting
    WAITING_MESSAGE = "kwok.airflow-kaniko.test/waiting-message"  # waiting

    @classmethod
    def succeed(cls, *, message: str | None = None, delay: str | None = None) -> PodControls:
        """The container exits 0; ``message`` becomes ``state.terminated.message``."""
        annotations: dict[str, str] = {}
        if message is not None:
            annotations[cls.TERMINATION_MESSAGE] = message
        if delay is not None:
            annotations[cls.DELAY] = delay
        return PodControls({cls.OUTCOME: cls.SUCCEED}, annotations)

    @classmethod
    def fail(
        cls,
        *,
        exit_code: int = 1,
        reason: str = "Error",
        message: str | None = None,
        delay: str | None = None,
    ) -> PodControls:
        """The container terminates with ``exit_code``, ``reason`` and ``message``."""
        annotations = {cls.EXIT_CODE: str(exit_code), cls.REASON: reason}
        if message is not None:
            annotations[cls.MESSAGE] = message
        if delay is not None:
            annotations[cls.DELAY] = delay
        return PodControls({cls.OUTCOME: cls.FAIL}, annotations)

    @classmethod
    def oom(cls, *, delay: str | None = None) -> PodControls:
        """The container is OOMKilled (exit code 137)."""
        return PodControls({cls.OUTCOME: cls.OOM}, {cls.DELAY: delay} if delay is not None else {})

    @classmethod
    def waiting(cls, *, reason: str = "ImagePullBackOff", message: str | None = None) -> PodControls:
        """The pod stays Pending with its container waiting for ``reason``."""
        annotations = {cls.WAITING_REASON: reason}
        if message is not None:
            annotations[cls.WAITING_MESSAGE] = message
        return PodControls({cls.OUTCOME: cls.WAITING}, annotations)

    @classmethod
    def running(cls) -> PodControls:
        """The pod reaches Running and never terminates by itself."""
        return PodControls({cls.OUTCOME: cls.RUNNING}, {})

    #: A nodeSelector no kwok node matches: the pod stays Pending, condition PodScheduled False
    #: with reason Unschedulable.
    UNSCHEDULABLE_NODE_SELECTOR: Mapping[str, str] = {"airflow-kaniko.test/no-such-node": "true"}


# --------------------------------------------------------------------------------------------
# Building the binaries
# --------------------------------------------------------------------------------------------


def go_missing_reason() -> str | None:
    """Why the binaries cannot be built here, or None when Go is available."""
    if shutil.which("go") is None:
        return "the Go toolchain (`go`) is not on PATH: the control plane is built from Go modules"
    return None


def build_control_plane(*, script: Path = BUILD_SCRIPT, env: Mapping[str, str] | None = None) -> Path:
    """Run the build script (a no-op when the cache is warm) and return the binaries' directory."""
    proc = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{script} failed with exit code {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-5000:]}\n--- stderr ---\n{proc.stderr[-20000:]}"
        )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if not lines:
        raise ControlPlaneError(f"{script} printed no output directory")
    out = Path(lines[-1].strip())
    missing = [b for b in BINARIES if not os.access(out / b, os.X_OK)]
    if missing:
        raise ControlPlaneError(f"{script} reported {out}, but it lacks {', '.join(missing)}")
    return out


# --------------------------------------------------------------------------------------------
# Certificates
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Pki:
    ca_cert: Path
    cert: Path  # serving cert of every component, and the admin client cert (system:masters)
    key: Path
    sa_key: Path  # service-account token signing key (private; the public half is derived)


def _write_pki(directory: Path) -> _Pki:
    """One CA and one leaf (what kwokctl does), plus a separate service-account key."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = pki.new_ca("airflow-kaniko-test-ca")
    service_ip = ipaddress.IPv4Address(next(ipaddress.IPv4Network(SERVICE_CLUSTER_IP_RANGE).hosts()))
    sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.DNSName("kubernetes.default.svc.cluster.local"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.IPAddress(service_ip),
    ]
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
            x509.NameAttribute(NameOID.COMMON_NAME, "kube-admin"),
        ]
    )
    key, cert = pki.issue_leaf(ca_key, ca_cert, subject=subject, sans=sans, client_auth=True)
    files = _Pki(
        ca_cert=pki.write_cert(ca_cert, directory / "ca.crt"),
        cert=pki.write_cert(cert, directory / "admin.crt"),
        key=pki.write_key(key, directory / "admin.key", traditional=True),
        sa_key=pki.write_key(pki.new_key(), directory / "sa.key", traditional=True),
    )
    return files


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def _kubeconfig(*, server: str, ca_cert: Path, user: Mapping[str, str], name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)}}
        ],
        "users": [{"name": name, "user": dict(user)}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": "default"}}],
        "current-context": name,
    }


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    # The OS picks free ports; they are distinct because all sockets are open at once. The
    # short window before a component binds its port is acceptable on a test machine.
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started us dies (even by SIGKILL).

    Linux delivers it when the *thread* that forked exits, so start and restart components from
    a thread that lives as long as the control plane (pytest's main thread does).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


@dataclass
class _Process:
    name: str
    args: list[str]
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            log.write(f"\n==== {time.strftime('%H:%M:%S')} starting {' '.join(self.args)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                # Its own session: a Ctrl-C in the terminal reaches pytest, which then stops the
                # components in order instead of them all dying at once.
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, *, timeout: float = 15.0) -> None:
        p = self.popen
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=timeout)
        self.popen = None

    def tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])


def _wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    alive: Callable[[], None] | None = None,
) -> T:
    """Call ``check`` until it returns something other than None (exceptions count as None)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        if alive is not None:
            alive()
        try:
            result = check()
        except Exception as exc:
            last_error = exc
            result = None
        if result is not None:
            return result
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# The control plane
# --------------------------------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok on loopback.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Everything lives in a
    temporary directory that :meth:`stop` removes (``keep_workdir=True`` keeps it for debugging).
    """

    def __init__(
        self,
        bin_dir: Path,
        *,
        nodes: int = 2,
        stages: Path = STAGES_FILE,
        workdir: Path | None = None,
        keep_workdir: bool = False,
        startup_timeout: float = 120.0,
        audit: bool = False,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.node_names = [f"kwok-node-{i}" for i in range(nodes)]
        self.stages = Path(stages)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="airflow-kaniko-cp-"))
        self.keep_workdir = keep_workdir
        self.startup_timeout = startup_timeout
        #: With ``audit=True`` kube-apiserver writes one JSON line per request to ``audit_log``
        #: (benchmarks count requests per build from it; see ``api_requests``).
        self.audit = audit
        self.audit_log = self.workdir / "audit.log"
        self.logs_dir = self.workdir / "logs"
        self.pod_logs_dir = self.workdir / "pod-logs"
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        #: Seconds spent in each start-up phase (for the report; never asserted).
        self.timings: dict[str, float] = {}
        self._processes: dict[str, _Process] = {}
        self._pki: _Pki | None = None
        self._ports: dict[str, int] = {}
        self._ssl: ssl.SSLContext | None = None
        self._api_client: Any = None

    # ---- public surface -------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._ports['apiserver']}"

    @property
    def ca_cert(self) -> Path:
        assert self._pki is not None
        return self._pki.ca_cert

    def airflow_connection(self, *, namespace: str = "default", kubeconfig: Path | None = None) -> str:
        """The value of ``AIRFLOW_CONN_<ID>`` for an Airflow ``kubernetes`` connection."""
        return json.dumps(
            {
                "conn_type": "kubernetes",
                "extra": {
                    "kube_config_path": str(kubeconfig or self.kubeconfig),
                    "namespace": namespace,
                },
            }
        )

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for the admin user (the caller closes it)."""
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        try:
            self._start()
        except BaseException as exc:
            report = self.describe_failure()
            self.stop()
            if isinstance(exc, ControlPlaneError):
                raise ControlPlaneError(f"{exc}\n{report}") from exc
            raise
        self.timings["total"] = time.monotonic() - t0

    def stop(self) -> None:
        """Stop every component (reverse start order) and remove the work directory."""
        if self._api_client is not None:
            with contextlib.suppress(Exception):
                self._api_client.close()
            self._api_client = None
        for name in reversed(list(self._processes)):
            with contextlib.suppress(Exception):
                self._processes[name].stop()
        if self._own_workdir and not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def describe_failure(self, *, lines: int = 60) -> str:
        """Each component's state and the last ``lines`` of its log."""
        parts = [f"control plane work directory: {self.workdir}"]
        for name, proc in self._processes.items():
            if proc.alive():
                state = "running"
            elif proc.popen is not None:
                state = f"exited ({proc.popen.returncode})"
            else:
                state = "stopped"
            parts.append(f"----- {name}: {state}; last lines of {proc.log} -----\n{proc.tail(lines)}")
        return "\n".join(parts)

    def print_logs(self, *, lines: int = 60, file: Any = None) -> None:
        print(self.describe_failure(lines=lines), file=file or sys.stderr)

    def pids(self) -> dict[str, int]:
        return {n: p.popen.pid for n, p in self._processes.items() if p.popen is not None}

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver (SIGTERM, graceful); clients see their connections drop."""
        self._processes["kube-apiserver"].stop()

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port, with the same etcd, and wait until ready."""
        proc = self._processes["kube-apiserver"]
        proc.start()
        _wait_for(
            "kube-apiserver /readyz after restart",
            self._apiserver_ready,
            timeout=self.startup_timeout,
            alive=self._check_alive,
        )

    def restart_apiserver(self, *, down_for: float = 0.0) -> None:
        """Stop kube-apiserver, stay down for ``down_for`` seconds, start it and wait for /readyz."""
        self.stop_apiserver()
        if down_for > 0:
            time.sleep(down_for)
        self.start_apiserver()

    def set_pod_logs(
        self,
        namespace: str,
        lines: Sequence[str],
        *,
        pods: Sequence[str] = (),
        containers: Sequence[str] = (),
        stream: str = "stdout",
        name: str | None = None,
    ) -> Path:
        """Serve ``lines`` as the log of every container of the pods in ``namespace``.

        kwok reads the file (CRI log format) at request time, so a test may append lines later
        (``append_pod_log``). Creates a kwok ``ClusterLogs`` selecting the namespace (and the
        ``pods`` names, when given). kwok's log stream with ``follow=true`` does not end when the
        pod finishes (kwok has no container runtime to ask), so a follower must stop by itself.
        Returns the log file.
        """
        from kubernetes import client

        obj_name = name or f"logs-{namespace}"
        path = self.pod_logs_dir / f"{obj_name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        self.append_pod_log(path, lines, stream=stream)
        log: dict[str, Any] = {"logsFile": str(path)}
        if containers:
            log["containers"] = list(containers)
        selector: dict[str, Any] = {"matchNamespaces": [namespace]}
        if pods:
            selector["matchNames"] = list(pods)
        body: dict[str, Any] = {
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "ClusterLogs",
            "metadata": {"name": obj_name},
            "spec": {"selector": selector, "logs": [log]},
        }
        api = client.CustomObjectsApi(self._client())
        try:
            api.create_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "clusterlogs", body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            api.replace_cluster_custom_object(
                "kwok.x-k8s.io",
                "v1alpha1",
                "clusterlogs",
                obj_name,
                {**body, "metadata": {**body["metadata"], "resourceVersion": self._rv(api, obj_name)}},
            )
        return path

    @staticmethod
    def append_pod_log(path: Path, lines: Sequence[str], *, stream: str = "stdout") -> None:
        with path.open("a", encoding="utf-8") as f:
            for line in lines:
                stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                f.write(f"{stamp} {stream} F {line}\n")

    def service_account_kubeconfig(
        self, namespace: str, service_account: str, *, path: Path | None = None, expiration: int = 3600
    ) -> Path:
        """A kubeconfig that authenticates as ``namespace/service_account`` (TokenRequest API)."""
        from kubernetes import client

        core = client.CoreV1Api(self._client())
        token = core.create_namespaced_service_account_token(
            service_account,
            namespace,
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration)
            ),
        ).status.token
        target = path or self.workdir / f"sa-{namespace}-{service_account}.kubeconfig"
        config = _kubeconfig(
            server=self.server,
            ca_cert=self.ca_cert,
            user={"token": token},
            name=f"{namespace}-{service_account}",
        )
        config["contexts"][0]["context"]["namespace"] = namespace
        target.write_text(yaml.safe_dump(config))
        return target

    def create_namespace(self, name: str, *, timeout: float = 60.0) -> None:
        """Create a namespace and wait for its ``default`` ServiceAccount (pods need it)."""
        from kubernetes import client

        core = client.CoreV1Api(self._client())
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        self._wait_default_service_account(name, timeout=timeout)

    # ---- start-up -------------------------------------------------------------------------

    def _start(self) -> None:
        missing = [b for b in BINARIES if not os.access(self.bin_dir / b, os.X_OK)]
        if missing:
            raise ControlPlaneError(f"{self.bin_dir} lacks {', '.join(missing)}")
        if not self.stages.is_file():
            raise ControlPlaneError(f"kwok stages file not found: {self.stages}")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        phase = time.monotonic()

        self._pki = pki = _write_pki(self.workdir / "pki")
        etcd_client, etcd_peer, api, kcm, sched, kwok = _free_ports(6)
        self._ports = {
            "etcd": etcd_client,
            "apiserver": api,
            "controller-manager": kcm,
            "scheduler": sched,
            "kwok": kwok,
        }
        self.kubeconfig.write_text(
            yaml.safe_dump(
                _kubeconfig(
                    server=self.server,
                    ca_cert=pki.ca_cert,
                    user={
                        "client-certificate-data": _b64(pki.cert),
                        "client-key-data": _b64(pki.key),
                    },
                    name="airflow-kaniko-test",
                )
            )
        )
        self.kubeconfig.chmod(0o600)
        self.timings["certificates"] = time.monotonic() - phase

        env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
        env["KWOK_WORKDIR"] = str(self.workdir / "kwok")
        b = self.bin_dir
        serving = [f"--tls-cert-file={pki.cert}", f"--tls-private-key-file={pki.key}"]
        delegated = [
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}",
            f"--authorization-kubeconfig={self.kubeconfig}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
            *serving,
        ]
        self._add(
            "etcd",
            [
                str(b / "etcd"),
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync=true",  # a throw-away store: fsync only costs time
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ],
            env,
        )
        self._add(
            "kube-apiserver",
            [
                str(b / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                # Without an explicit address a machine with no default route fails with
                # "Unable to find suitable network address".
                "--advertise-address=127.0.0.1",
                f"--secure-port={api}",
                # A loopback advertise address fails Endpoints validation for the kubernetes
                # Service; nothing in the tests needs that Service's endpoints.
                "--endpoint-reconciler-type=none",
                *serving,
                f"--client-ca-file={pki.ca_cert}",
                f"--service-account-key-file={pki.sa_key}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
                "--authorization-mode=Node,RBAC",
                # kwok's server is the "kubelet": reach it at the node's InternalIP (127.0.0.1);
                # the Hostname address may resolve to ::1 where kwok does not listen.
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                *self._audit_flags(),
            ],
            env,
        )
        self._add(
            "kube-controller-manager",
            [
                str(b / "kube-controller-manager"),
                *delegated,
                f"--secure-port={kcm}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.sa_key}",
                "--cluster-name=airflow-kaniko-test",
                # kwok renews node Leases; a long grace period keeps the nodes Ready even when the
                # machine is busy or kube-apiserver restarts in a test.
                "--node-monitor-grace-period=1h",
                "--profiling=false",
            ],
            env,
        )
        self._add(
            "kube-scheduler",
            [str(b / "kube-scheduler"), *delegated, f"--secure-port={sched}", "--profiling=false"],
            env,
        )

        # etcd and the apiserver start together (the apiserver retries etcd). The controller-
        # manager and the scheduler wait for /readyz: with --authentication-kubeconfig they exit
        # at once when the apiserver does not answer yet.
        phase = time.monotonic()
        for name in ("etcd", "kube-apiserver"):
            self._processes[name].start()
        _wait_for("etcd /health", self._etcd_ready, timeout=self.startup_timeout, alive=self._check_alive)
        self.timings["etcd"] = time.monotonic() - phase
        _wait_for(
            "kube-apiserver /readyz",
            self._apiserver_ready,
            timeout=self.startup_timeout,
            alive=self._check_alive,
        )
        self.timings["kube-apiserver"] = time.monotonic() - phase
        for name in ("kube-controller-manager", "kube-scheduler"):
            self._processes[name].start()

        # kwok watches its ClusterLogs / Logs as CRDs (so tests can add pod logs at run time);
        # the CRDs must be established before kwok starts.
        phase = time.monotonic()
        self._install_kwok_crds()
        self._add(
            "kwok",
            [
                str(b / "kwok"),
                f"--kubeconfig={self.kubeconfig}",
                f"--config={self.stages}",
                "--manage-all-nodes=true",
                "--node-ip=127.0.0.1",
                "--node-name=localhost",
                f"--node-port={kwok}",
                f"--server-address=127.0.0.1:{kwok}",
                *serving,
                "--enable-crds=ClusterLogs,Logs",
            ],
            env,
        )
        self._processes["kwok"].start()
        self._create_nodes()
        _wait_for(
            "kwok nodes Ready", self._nodes_ready, timeout=self.startup_timeout, alive=self._check_alive
        )
        self.timings["kwok-nodes"] = time.monotonic() - phase

        phase = time.monotonic()
        for name, port in (("kube-controller-manager", kcm), ("kube-scheduler", sched)):
            _wait_for(
                f"{name} /healthz",
                lambda port=port: self._https_ok(port, "/healthz"),  # type: ignore[misc]
                timeout=self.startup_timeout,
                alive=self._check_alive,
            )
        self._wait_default_service_account("default", timeout=self.startup_timeout)
        self.timings["controllers"] = time.monotonic() - phase

    def _audit_flags(self) -> list[str]:
        if not self.audit:
            return []
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "audit.k8s.io/v1",
                    "kind": "Policy",
                    # One event per request, written when the response is complete (for a watch:
                    # when the watch ends).
                    "omitStages": ["RequestReceived", "ResponseStarted"],
                    "rules": [{"level": "Metadata"}],
                }
            )
        )
        return [
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ]

    def api_requests(
        self, *, namespace: str | None = None, clients_only: bool = True
    ) -> list[dict[str, Any]]:
        """Audit events (one per finished request), optionally of one namespace.

        ``clients_only`` drops the control plane's own components (they share the admin
        certificate, so they are told apart by user agent) and keeps what tests and Airflow sent.
        A watch still open has no event yet.
        """
        if not self.audit:
            raise ControlPlaneError("start the control plane with audit=True to count API requests")
        components = (
            "kube-controller-manager",
            "kube-scheduler",
            "kwok",
            "kube-apiserver",
            CONTROL_PLANE_AGENT,
        )
        events = []
        with contextlib.suppress(FileNotFoundError), self.audit_log.open(encoding="utf-8") as f:
            for line in f:
                event = json.loads(line)
                if namespace is not None and (event.get("objectRef") or {}).get("namespace") != namespace:
                    continue
                agent = str(event.get("userAgent") or "")
                if clients_only and (agent.startswith(components) or "/leader-election" in agent):
                    continue
                events.append(event)
        return events

    def _add(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self._processes[name] = _Process(name, args, self.logs_dir / f"{name}.log", env)

    def _check_alive(self) -> None:
        for name, proc in self._processes.items():
            if proc.popen is not None and proc.popen.poll() is not None:
                raise ControlPlaneError(f"{name} exited with code {proc.popen.returncode}")

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            assert self._pki is not None
            ctx = ssl.create_default_context(cafile=str(self._pki.ca_cert))
            ctx.load_cert_chain(str(self._pki.cert), str(self._pki.key))
            self._ssl = ctx
        return self._ssl

    def _get(self, url: str, *, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
        # No proxies: everything is on loopback.
        handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
        if context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=context))
        opener = urllib.request.build_opener(*handlers)
        try:
            with opener.open(url, timeout=5) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def _etcd_ready(self) -> bool | None:
        status, body = self._get(f"http://127.0.0.1:{self._ports['etcd']}/health")
        return True if status == 200 and json.loads(body).get("health") == "true" else None

    def _https_ok(self, port: int, path: str) -> bool | None:
        status, _ = self._get(f"https://127.0.0.1:{port}{path}", context=self._ssl_context())
        return True if status == 200 else None

    def _apiserver_ready(self) -> bool | None:
        return self._https_ok(self._ports["apiserver"], "/readyz")

    def _client(self) -> Any:
        if self._api_client is None:
            self._api_client = self.api_client()
            # Told apart from the tests' and Airflow's requests in the audit log.
            self._api_client.user_agent = CONTROL_PLANE_AGENT
        return self._api_client

    def _install_kwok_crds(self) -> None:
        from kubernetes import client

        crd_dir = self.bin_dir / "crds"
        files = [crd_dir / "kwok.x-k8s.io_clusterlogs.yaml", crd_dir / "kwok.x-k8s.io_logs.yaml"]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise ControlPlaneError(
                f"kwok CRDs missing ({', '.join(missing)}): rerun {BUILD_SCRIPT} to refresh the cache"
            )
        api = client.ApiextensionsV1Api(self._client())
        names = []
        for f in files:
            body = yaml.safe_load(f.read_text())
            api.create_custom_resource_definition(body)
            names.append(body["metadata"]["name"])

        def established() -> bool | None:
            for n in names:
                crd = api.read_custom_resource_definition(n)
                conditions = {c.type: c.status for c in (crd.status.conditions or [])}
                if conditions.get("Established") != "True":
                    return None
            return True

        _wait_for("kwok CRDs Established", established, timeout=60, alive=self._check_alive)

    def _create_nodes(self) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self._client())
        for name in self.node_names:
            core.create_node(
                client.V1Node(
                    metadata=client.V1ObjectMeta(
                        name=name,
                        labels={
                            "type": "kwok",
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                        },
                        annotations={"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                    )
                )
            )

    def _nodes_ready(self) -> bool | None:
        from kubernetes import client

        core = client.CoreV1Api(self._client())
        for name in self.node_names:
            node = core.read_node(name)
            ready = [c for c in (node.status.conditions or []) if c.type == "Ready"]
            if not ready or ready[0].status != "True":
                return None
            # The node lifecycle controller removes its not-ready taint once it sees Ready.
            if any(t.key.startswith("node.kubernetes.io/") for t in (node.spec.taints or [])):
                return None
        return True

    def _wait_default_service_account(self, namespace: str, *, timeout: float) -> None:
        from kubernetes import client

        core = client.CoreV1Api(self._client())

        def exists() -> bool | None:
            try:
                core.read_namespaced_service_account("default", namespace)
            except client.ApiException as exc:
                if exc.status == 404:
                    return None
                raise
            return True

        _wait_for(f"ServiceAccount {namespace}/default", exists, timeout=timeout, alive=self._check_alive)

    def _rv(self, api: Any, name: str) -> str:
        obj = api.get_cluster_custom_object("kwok.x-k8s.io", "v1alpha1", "clusterlogs", name)
        return str(obj["metadata"]["resourceVersion"])


@contextlib.contextmanager
def running_control_plane(bin_dir: Path, **kwargs: Any) -> Iterator[ControlPlane]:
    with ControlPlane(bin_dir, **kwargs) as cp:
        yield cp


# --------------------------------------------------------------------------------------------
# Small helpers for tests (polling is fine here: these wait for the cluster, they time nothing)
# --------------------------------------------------------------------------------------------


def wait_until(
    what: str, check: Callable[[], T | None], *, timeout: float = 60.0, interval: float = 0.2
) -> T:
    """Call ``check`` until it returns something other than None; fail after ``timeout`` s."""
    return _wait_for(what, check, timeout=timeout, interval=interval)


def job_finished(batch_v1: Any, namespace: str, name: str) -> Any:
    """The Job when it has a terminal condition (Complete or Failed) set to True, else None."""
    job = batch_v1.read_namespaced_job(name, namespace)
    for c in job.status.conditions or []:
        if c.type in ("Complete", "Failed") and c.status == "True":
            return job
    return None


def job_condition(job: Any, kind: str) -> Any:
    """The condition of type ``kind`` on a Job (or None)."""
    return next((c for c in job.status.conditions or [] if c.type == kind), None)


def pods_of_job(core_v1: Any, namespace: str, name: str) -> list[Any]:
    """The Job's pods, oldest first."""
    pods = core_v1.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={name}").items
    return sorted(pods, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name))


def dump(obj: Any) -> str:
    """Readable JSON of an API object, for assertion messages."""
    from kubernetes import client

    return json.dumps(client.ApiClient().sanitize_for_serialization(obj), indent=1, default=str)[:6000]
