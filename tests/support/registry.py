"""A real OCI registry on loopback for tests: Debian's docker-registry (distribution 2.8).

Shared by the registry tier (tests/registry/) and the kaniko end-to-end tier. Everything
here runs on this machine without Docker:

- ``start_registry(workdir, auth=..., tls=...)`` starts ``docker-registry serve`` on a free
  loopback port in one of three modes: anonymous, htpasswd Basic (``htpasswd -B``), or
  distribution's ``token`` auth backed by ``TokenIssuer``, a small HTTP server signing
  RS256 JWTs with a key whose self-signed certificate is the registry's ``rootcertbundle``.
  With ``tls=True`` the registry serves HTTPS with a certificate from a throwaway CA.
- ``build_image`` / ``build_index`` write an OCI image layout (single manifest or an index
  of per-platform manifests, with labels in the config blob); ``push_layout`` copies it
  into the registry with skopeo (``--all --preserve-digests``) and returns the digest.
- ``HeaderStrippingProxy`` is a loopback reverse proxy in front of a registry that drops
  response headers (``Docker-Content-Digest``) and can answer the first requests with
  canned faults (429/503 with Retry-After) before forwarding.

``registry_unavailable_reason()`` says why the tier cannot run (missing binaries), so the
tier skips with the reason instead of failing.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import http.server
import io
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from tests.support import pki

__all__ = [
    "APT_PACKAGES",
    "AuthMode",
    "Fault",
    "HeaderStrippingProxy",
    "OciImage",
    "RunningRegistry",
    "TokenIssuer",
    "build_image",
    "build_index",
    "free_port",
    "push_layout",
    "registry_unavailable_reason",
    "start_registry",
]

# What CI must install for this module (Debian bookworm package names).
APT_PACKAGES = ("docker-registry", "skopeo", "apache2-utils")

REGISTRY_BIN = "/usr/bin/docker-registry"
AuthMode = Literal["anonymous", "basic", "token"]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def registry_unavailable_reason() -> str | None:
    """None when the registry tier can run here, else why not (for the skip message)."""
    missing = [
        f"{binary} (apt-get install -y {package})"
        for binary, package in (
            (REGISTRY_BIN, "docker-registry"),
            ("skopeo", "skopeo"),
            ("htpasswd", "apache2-utils"),
        )
        if not (Path(binary).exists() if binary.startswith("/") else shutil.which(binary))
    ]
    return f"missing {', '.join(missing)}" if missing else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- certificates -------------------------------------------------------------------------


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class _TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def _make_tls(directory: Path) -> _TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = pki.new_ca("airflow-kaniko test CA", days=2)
    key, cert = pki.issue_leaf(
        ca_key,
        ca_cert,
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        days=2,
    )
    return _TlsFiles(
        ca_cert=pki.write_cert(ca_cert, directory / "ca.crt"),
        cert=pki.write_cert(cert, directory / "server.crt"),
        key=pki.write_key(key, directory / "server.key"),
    )


# --- token issuer -------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenIssuer:
    """The token service of distribution's ``token`` auth, as the registry docs describe it.

    ``GET /token?service=&scope=`` with Basic credentials (or none, for an anonymous
    token) and ``POST /token`` with an OAuth2 ``refresh_token`` grant. Users listed in
    ``users`` get every action they ask for on every repository, unless ``grants`` narrows
    it (``{"user": {"pull"}}``); unknown or wrong credentials get 401. ``requests`` records
    what each token request carried (user name, scopes), never passwords.
    """

    def __init__(
        self,
        directory: Path,
        *,
        service: str,
        issuer: str = "airflow-kaniko-test-issuer",
        users: Mapping[str, str] | None = None,
        refresh_tokens: Mapping[str, str] | None = None,
        grants: Mapping[str, set[str]] | None = None,
        anonymous_actions: set[str] | None = None,
        token_field: Literal["token", "access_token", "both"] = "token",
    ) -> None:
        self.service = service
        self.issuer = issuer
        self.users = dict(users or {})
        self.refresh_tokens = dict(refresh_tokens or {})
        self.grants = dict(grants or {})
        self.anonymous_actions = set(anonymous_actions or set())
        self.token_field = token_field
        self.requests: list[dict[str, Any]] = []
        directory.mkdir(parents=True, exist_ok=True)
        self._key, self._cert = pki.new_ca("airflow-kaniko test token issuer", days=2)
        self.root_cert_bundle = directory / "token-ca.crt"
        self.root_cert_bundle.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, *, subject: str, access: list[dict[str, Any]], lifetime: int = 300) -> str:
        header = {
            "typ": "JWT",
            "alg": "RS256",
            # distribution verifies an x5c chain against its rootcertbundle.
            "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def _grant(self, user: str | None, scopes: Sequence[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = {a for a in actions.split(",") if a}
            if user is None:
                allowed = wanted & self.anonymous_actions
            elif user in self.grants:
                allowed = wanted & self.grants[user]
            else:
                allowed = wanted
            if allowed:
                access.append({"type": kind, "name": name, "actions": sorted(allowed)})
        return access

    def _answer(self, handler: http.server.BaseHTTPRequestHandler, params: dict[str, list[str]]) -> None:
        user: str | None = None
        authorization = handler.headers.get("Authorization", "")
        grant_type = params.get("grant_type", [""])[0]
        if grant_type == "refresh_token":
            user = self.refresh_tokens.get(params.get("refresh_token", [""])[0])
            if user is None:
                return self._reply(handler, 401, {"error": "invalid_grant"})
        elif authorization.startswith("Basic "):
            login, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            if self.users.get(login) != password:
                self.requests.append({"user": login, "accepted": False, "scopes": params.get("scope", [])})
                return self._reply(handler, 401, {"errors": [{"code": "UNAUTHORIZED"}]})
            user = login
        scopes = [s for value in params.get("scope", []) for s in value.split(" ") if s]
        self.requests.append(
            {"user": user, "accepted": True, "scopes": scopes, "grant_type": grant_type or None}
        )
        token = self.sign(subject=user or "", access=self._grant(user, scopes))
        body: dict[str, Any] = {"expires_in": 300, "issued_at": _now().isoformat()}
        if self.token_field in ("token", "both"):
            body["token"] = token
        if self.token_field in ("access_token", "both"):
            body["access_token"] = token
        self._reply(handler, 200, body)

    @staticmethod
    def _reply(handler: http.server.BaseHTTPRequestHandler, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def start(self) -> TokenIssuer:
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.urlsplit(self.path).query
                issuer._answer(self, urllib.parse.parse_qs(query))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = self.rfile.read(length).decode()
                issuer._answer(self, urllib.parse.parse_qs(form))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="token-issuer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# --- the registry -------------------------------------------------------------------------


@dataclass
class RunningRegistry:
    """A started docker-registry. ``host`` is ``127.0.0.1:<port>``, what references use."""

    host: str
    url: str
    auth: AuthMode
    tls: bool
    workdir: Path
    username: str | None = None
    password: str | None = None
    ca_cert: Path | None = None
    token_issuer: TokenIssuer | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log_path: Path | None = None

    @property
    def credentials(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return self.username, self.password

    def docker_config(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        key: str | None = None,
        cred_helper: str | None = None,
    ) -> dict[str, Any]:
        """A dockerconfigjson for this registry (``auths`` keyed by host, or a credHelper)."""
        if cred_helper is not None:
            return {"auths": {}, "credHelpers": {key or self.host: cred_helper}}
        login = username if username is not None else self.username
        secret = password if password is not None else self.password
        if login is None or secret is None:
            return {"auths": {}}
        auth = base64.b64encode(f"{login}:{secret}".encode()).decode()
        return {"auths": {key or self.host: {"auth": auth}}}

    def docker_config_json(self, **kwargs: Any) -> str:
        return json.dumps(self.docker_config(**kwargs))

    def write_docker_config(self, path: Path, **kwargs: Any) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.docker_config_json(**kwargs))
        path.chmod(0o600)
        return path

    def log(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self.token_issuer is not None:
            self.token_issuer.stop()


def _registry_config(
    *,
    port: int,
    storage: Path,
    auth: AuthMode,
    htpasswd: Path | None,
    tls: _TlsFiles | None,
    issuer: TokenIssuer | None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "accesslog": {"disabled": False}, "formatter": "text"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": uuid.uuid4().hex},
        "health": {"storagedriver": {"enabled": False}},
    }
    if tls is not None:
        config["http"]["tls"] = {"certificate": str(tls.cert), "key": str(tls.key)}
    if auth == "basic":
        assert htpasswd is not None
        config["auth"] = {"htpasswd": {"realm": "airflow-kaniko-test", "path": str(htpasswd)}}
    elif auth == "token":
        assert issuer is not None
        config["auth"] = {
            "token": {
                "realm": issuer.realm,
                "service": issuer.service,
                "issuer": issuer.issuer,
                "rootcertbundle": str(issuer.root_cert_bundle),
            }
        }
    return config


def start_registry(
    workdir: Path,
    *,
    auth: AuthMode = "anonymous",
    tls: bool = False,
    username: str = "builder",
    password: str | None = None,
    token_options: Mapping[str, Any] | None = None,
    startup_timeout: float = 30.0,
) -> RunningRegistry:
    """Start docker-registry on a free loopback port and wait until /v2/ answers.

    The caller stops it (``registry.stop()``); ``registry_server`` is the context manager.
    Credentials are generated per registry unless given.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    password = password or f"pw-{uuid.uuid4().hex[:12]}"
    tls_files = _make_tls(workdir / "tls") if tls else None
    htpasswd: Path | None = None
    issuer: TokenIssuer | None = None
    if auth == "basic":
        htpasswd = workdir / "htpasswd"
        subprocess.run(
            ["htpasswd", "-B", "-b", "-c", str(htpasswd), username, password],
            check=True,
            capture_output=True,
        )
    elif auth == "token":
        options = dict(token_options or {})
        options.setdefault("users", {username: password})
        issuer = TokenIssuer(workdir / "token", service=f"registry-{port}", **options).start()
    config = _registry_config(
        port=port, storage=workdir / "storage", auth=auth, htpasswd=htpasswd, tls=tls_files, issuer=issuer
    )
    config_path = workdir / "config.yml"
    # JSON is YAML; docker-registry reads it as its config file.
    config_path.write_text(json.dumps(config, indent=2))
    log_path = workdir / "registry.log"
    scheme = "https" if tls else "http"
    registry = RunningRegistry(
        host=f"127.0.0.1:{port}",
        url=f"{scheme}://127.0.0.1:{port}",
        auth=auth,
        tls=tls,
        workdir=workdir,
        username=username if auth != "anonymous" else None,
        password=password if auth != "anonymous" else None,
        ca_cert=tls_files.ca_cert if tls_files else None,
        token_issuer=issuer,
        log_path=log_path,
    )
    with log_path.open("wb") as log:
        registry.process = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "OTEL_TRACES_EXPORTER": "none"},
        )
    try:
        _wait_ready(registry, timeout=startup_timeout)
    except BaseException:
        registry.stop()
        raise
    return registry


def _wait_ready(registry: RunningRegistry, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    verify: Any = str(registry.ca_cert) if registry.ca_cert else True
    with httpx.Client(verify=verify, timeout=2.0) as client:
        while True:
            assert registry.process is not None
            if registry.process.poll() is not None:
                raise RuntimeError(
                    f"docker-registry exited with {registry.process.returncode}:\n{registry.log()[-4000:]}"
                )
            try:
                response = client.get(f"{registry.url}/v2/")
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code in (200, 401):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"docker-registry did not answer within {timeout}s:\n{registry.log()[-4000:]}"
                )
            time.sleep(0.1)


@contextlib.contextmanager
def registry_server(workdir: Path, **kwargs: Any) -> Iterator[RunningRegistry]:
    registry = start_registry(workdir, **kwargs)
    try:
        yield registry
    finally:
        registry.stop()


# --- test images --------------------------------------------------------------------------


@dataclass(frozen=True)
class OciImage:
    """An OCI image layout on disk holding one tagged manifest or index.

    ``digest`` is the digest of the tagged manifest or index; ``children`` maps each
    platform (``linux/amd64``) of an index to its manifest digest.
    """

    layout: Path
    tag: str
    digest: str
    media_type: str
    manifest: bytes
    children: Mapping[str, str] = field(default_factory=dict)
    config_digests: tuple[str, ...] = ()


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _write_blob(layout: Path, data: bytes) -> str:
    digest = _sha256(data)
    path = layout / "blobs" / "sha256" / digest.split(":", 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest


def _layer(content: bytes) -> tuple[bytes, str]:
    """A gzip'd tar with one file; returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        info.mtime = 0
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(content))
    diff_id = _sha256(raw.getvalue())
    return gzip.compress(raw.getvalue(), mtime=0), diff_id


def _platform(text: str) -> dict[str, str]:
    parts = text.split("/")
    platform = {"os": parts[0], "architecture": parts[1]}
    if len(parts) > 2:
        platform["variant"] = parts[2]
    return platform


def _write_manifest(
    layout: Path, *, platform: str, labels: Mapping[str, str], content: bytes
) -> tuple[bytes, str, str]:
    blob, diff_id = _layer(content)
    layer_digest = _write_blob(layout, blob)
    config = {
        **_platform(platform),
        "created": "2026-01-01T00:00:00Z",
        "config": {"Labels": dict(labels), "Cmd": ["/hello.txt"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "airflow-kaniko tests"}],
    }
    config_bytes = _canonical(config)
    config_digest = _write_blob(layout, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(blob)}],
    }
    manifest_bytes = _canonical(manifest)
    return manifest_bytes, _write_blob(layout, manifest_bytes), config_digest


def _write_layout_index(layout: Path, *, tag: str, media_type: str, digest: str, size: int) -> None:
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    top = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    (layout / "index.json").write_text(json.dumps(top))


def build_image(
    layout: Path,
    *,
    tag: str = "latest",
    platform: str = "linux/amd64",
    labels: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> OciImage:
    """Write an OCI layout with one single-platform image. ``content`` makes it unique."""
    layout.mkdir(parents=True, exist_ok=True)
    manifest, digest, config_digest = _write_manifest(
        layout, platform=platform, labels=labels or {}, content=content or uuid.uuid4().bytes
    )
    _write_layout_index(layout, tag=tag, media_type=OCI_MANIFEST, digest=digest, size=len(manifest))
    return OciImage(
        layout=layout,
        tag=tag,
        digest=digest,
        media_type=OCI_MANIFEST,
        manifest=manifest,
        config_digests=(config_digest,),
    )


def build_index(
    layout: Path,
    *,
    tag: str = "latest",
    platforms: Sequence[str] = ("linux/amd64", "linux/arm64"),
    labels: Mapping[str, str] | None = None,
    content: bytes | None = None,
) -> OciImage:
    """Write an OCI layout with an image index of one manifest per platform."""
    layout.mkdir(parents=True, exist_ok=True)
    seed = content or uuid.uuid4().bytes
    children: dict[str, str] = {}
    entries = []
    configs = []
    for platform in platforms:
        manifest, digest, config_digest = _write_manifest(
            layout, platform=platform, labels=labels or {}, content=seed + platform.encode()
        )
        children[platform] = digest
        configs.append(config_digest)
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(manifest),
                "platform": _platform(platform),
            }
        )
    index = _canonical({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    digest = _write_blob(layout, index)
    _write_layout_index(layout, tag=tag, media_type=OCI_INDEX, digest=digest, size=len(index))
    return OciImage(
        layout=layout,
        tag=tag,
        digest=digest,
        media_type=OCI_INDEX,
        manifest=index,
        children=children,
        config_digests=tuple(configs),
    )


def push_layout(registry: RunningRegistry, image: OciImage, destination: str) -> str:
    """Copy ``image`` to ``<registry.host>/<destination>`` with skopeo; returns the digest.

    ``destination`` is ``repository[:tag]``. Digests are preserved, so the returned digest
    equals ``image.digest``; skopeo's own digest file is what is returned.
    """
    workdir = registry.workdir / "skopeo"
    workdir.mkdir(parents=True, exist_ok=True)
    digest_file = workdir / f"digest-{uuid.uuid4().hex}"
    command = [
        "skopeo",
        "--insecure-policy",
        "copy",
        "--all",
        "--preserve-digests",
        "--quiet",
        "--digestfile",
        str(digest_file),
    ]
    if registry.tls:
        cert_dir = workdir / "certs"
        cert_dir.mkdir(exist_ok=True)
        assert registry.ca_cert is not None
        shutil.copy(registry.ca_cert, cert_dir / "ca.crt")
        command += ["--dest-cert-dir", str(cert_dir)]
    else:
        command += ["--dest-tls-verify=false"]
    if registry.credentials is not None:
        authfile = registry.write_docker_config(workdir / f"auth-{uuid.uuid4().hex}.json")
        command += ["--dest-authfile", str(authfile)]
    command += [f"oci:{image.layout}:{image.tag}", f"docker://{registry.host}/{destination}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy failed ({result.returncode}): {result.stderr.strip()}")
    return digest_file.read_text().strip()


# --- a proxy that changes what the registry answers ---------------------------------------


@dataclass(frozen=True)
class Fault:
    """A canned answer the proxy gives instead of forwarding (e.g. 503 + Retry-After)."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    only_path_prefix: str = "/v2/"


_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "content-encoding",
}


class HeaderStrippingProxy:
    """A loopback reverse proxy to a plain-HTTP registry.

    Drops ``strip_headers`` from every response (Docker-Content-Digest by default: some
    registries and caches omit it) and answers the first requests with ``faults``, in
    order, before forwarding anything. ``seen`` records (method, path, status) per request.
    """

    def __init__(
        self,
        upstream: str,
        *,
        strip_headers: Sequence[str] = ("Docker-Content-Digest",),
        faults: Sequence[Fault] = (),
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.strip = {h.lower() for h in strip_headers}
        self.faults = list(faults)
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._client = httpx.Client(timeout=30.0)
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            if self.faults and path.startswith(self.faults[0].only_path_prefix):
                return self.faults.pop(0)
        return None

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        method = handler.command
        fault = self._next_fault(handler.path)
        if fault is not None:
            handler.send_response(fault.status)
            for name, value in fault.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(fault.body)))
            handler.end_headers()
            if method != "HEAD":
                handler.wfile.write(fault.body)
            self.seen.append((method, handler.path, fault.status))
            return
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
        upstream = self._client.request(method, self.upstream + handler.path, headers=headers, content=body)
        handler.send_response(upstream.status_code)
        for name, value in upstream.headers.multi_items():
            if name.lower() in self.strip or name.lower() in _HOP_BY_HOP:
                continue
            if name.lower() == "location" and value.startswith(self.upstream):
                value = f"http://{self.host}{value[len(self.upstream) :]}"
            handler.send_header(name, value)
        data = upstream.content
        if method == "HEAD":
            handler.send_header("Content-Length", upstream.headers.get("Content-Length", "0"))
        else:
            handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if method != "HEAD":
            handler.wfile.write(data)
        self.seen.append((method, handler.path, upstream.status_code))

    def start(self) -> HeaderStrippingProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._handle(self)

            do_HEAD = do_GET
            do_POST = do_GET
            do_PUT = do_GET
            do_PATCH = do_GET
            do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="registry-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._client.close()

    def __enter__(self) -> HeaderStrippingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
