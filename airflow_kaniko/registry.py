"""The only module that talks to container registries (OCI distribution spec, v2 API).

What it does: ``GET /v2/`` for the auth challenge; Bearer tokens (realm, service, scope;
``token`` or ``access_token``) or Basic; ``HEAD /v2/<name>/manifests/<ref>`` with the OCI
and Docker manifest and index media types in ``Accept``; the digest from
``Docker-Content-Digest`` or, where a registry omits it, the sha256 of the GET body; and,
when asked, the platforms of an index and the labels in the config blobs.

Layout: every protocol decision is a plain function (``parse_challenges``,
``choose_challenge``, ``token_request``, ``parse_token_response``, ``retry_delay``,
``endpoints_for``, ``parse_manifest``, ``DockerConfig`` lookups). The I/O is thin:
``RegistryAuth`` is an httpx auth *generator* (it yields the token request and receives
the response), so the same class would serve an ``httpx.AsyncClient``; ``RegistryClient``
is sync only, because the sensor reschedules instead of deferring. Failures are not
raised but returned as ``RegistryAnswer`` with an ``Outcome`` so the verdict
(``verification.py``) is decided in one pure place.

Credentials never reach a log line, an exception or a ``repr``: messages name the
registry and where credentials came from (``Credentials.source``), never their values.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import enum
import hashlib
import json
import logging
import re
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from airflow_kaniko import __version__
from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.reference import DOCKER_HUB, ImageReference

__all__ = [
    "DOCKER_HUB_API_HOST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_ACCEPT",
    "Challenge",
    "CredentialSource",
    "Credentials",
    "DockerConfig",
    "Endpoint",
    "ImageConfig",
    "Outcome",
    "RegistryAnswer",
    "RegistryAuth",
    "RegistryClient",
    "RetryPolicy",
    "StaticCredentials",
    "api_host",
    "chain_credentials",
    "choose_challenge",
    "credentials_from_helper_output",
    "digest_of",
    "endpoints_for",
    "normalize_registry",
    "parse_challenges",
    "parse_manifest",
    "parse_retry_after",
    "parse_token_response",
    "retry_delay",
    "scope_for_path",
    "token_request",
]

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_ACCEPT = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})

# Docker Hub: references say docker.io, the API lives at registry-1.docker.io, and docker
# config files key its credentials as https://index.docker.io/v1/.
DOCKER_HUB_API_HOST = "registry-1.docker.io"
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_DOCKER_HUB_ALIASES = frozenset(
    {DOCKER_HUB, "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}
)
_USER_AGENT = f"airflow-kaniko/{__version__}"


# --- names ----------------------------------------------------------------------------------


def normalize_registry(text: str) -> str:
    """``https://index.docker.io/v1/`` -> ``docker.io``; ``http://host:5000/x`` -> ``host:5000``.

    Docker config keys, Airflow connection hosts and reference registries all go through
    this, so they compare equal however the user wrote them (docker's ConvertToHostname).
    """
    host = text.strip()
    for prefix in ("https://", "http://"):
        if host.lower().startswith(prefix):
            host = host[len(prefix) :]
    host = host.split("/", 1)[0].lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def api_host(registry: str) -> str:
    """The host:port whose /v2/ API serves ``registry`` (Docker Hub's differs from its name)."""
    name = normalize_registry(registry)
    return DOCKER_HUB_API_HOST if name == DOCKER_HUB else name


# --- auth challenges ------------------------------------------------------------------------

_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*,?')
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)")


@dataclass(frozen=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: scheme (lower case) and its parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scope(self) -> str | None:
        return self.params.get("scope")

    @property
    def error(self) -> str | None:
        return self.params.get("error")


def parse_challenges(values: Sequence[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (RFC 7235): quoted strings may hold commas."""
    challenges: list[Challenge] = []
    for value in values:
        position = 0
        while position < len(value):
            scheme_match = _SCHEME.match(value, position)
            if not scheme_match:
                break
            position = scheme_match.end()
            params: dict[str, str] = {}
            while position < len(value):
                param = _AUTH_PARAM.match(value, position)
                if not param:
                    break
                params[param.group(1).lower()] = (
                    re.sub(r"\\(.)", r"\1", param.group(2)) if param.group(2) is not None else param.group(3)
                )
                position = param.end()
            challenges.append(Challenge(scheme=scheme_match.group(1).lower(), params=params))
            while position < len(value) and value[position] in " ,":
                position += 1
    return challenges


def choose_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    """Bearer when offered (with a realm), else Basic; other schemes are not supported."""
    bearer = next((c for c in challenges if c.scheme == "bearer" and c.realm), None)
    return bearer or next((c for c in challenges if c.scheme == "basic"), None)


def scope_for_path(path: str) -> str | None:
    """The pull scope a request needs: ``/v2/team/app/manifests/v1`` -> ``repository:team/app:pull``."""
    match = re.match(r"^/v2/(.+)/(?:manifests|blobs|tags)/", path)
    return f"repository:{match.group(1)}:pull" if match else None


# --- credentials ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """Registry credentials. Secret fields stay out of ``repr``; ``source`` is safe to print.

    ``identity_token`` is an OAuth2 refresh token (docker config ``identitytoken``, or a
    credential helper's ``<token>`` user); ``registry_token`` is a bearer token used as is.
    """

    source: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)
    registry_token: str | None = field(default=None, repr=False)

    @property
    def has_basic(self) -> bool:
        return bool(self.username) and self.password is not None


CredentialSource = Callable[[str], "Credentials | None"]
"""Given a registry (as in references: ``docker.io``, ``host:5000``), its credentials or None."""


class StaticCredentials:
    """Credentials for named registries, e.g. from an Airflow connection (host = registry)."""

    def __init__(self, entries: Mapping[str, Credentials]) -> None:
        self._entries = {normalize_registry(key): value for key, value in entries.items()}

    def __call__(self, registry: str) -> Credentials | None:
        return self._entries.get(normalize_registry(registry))


def chain_credentials(*sources: CredentialSource | None) -> CredentialSource:
    """The first source that knows the registry wins."""
    present = [source for source in sources if source is not None]

    def lookup(registry: str) -> Credentials | None:
        for source in present:
            found = source(registry)
            if found is not None:
                return found
        return None

    return lookup


def credentials_from_helper_output(stdout: str, *, helper: str) -> Credentials | None:
    """Parse a ``docker-credential-<helper> get`` answer ({ServerURL, Username, Secret})."""
    try:
        data = json.loads(stdout)
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("Secret"):
        return None
    source = f"credential helper docker-credential-{helper}"
    if data.get("Username") == "<token>":
        return Credentials(source=source, identity_token=str(data["Secret"]))
    return Credentials(source=source, username=str(data.get("Username") or ""), password=str(data["Secret"]))


def helper_server_url(registry: str) -> str:
    """What a credential helper is asked for: docker's key for Docker Hub, else the host."""
    name = normalize_registry(registry)
    return DOCKER_HUB_CONFIG_KEY if name == DOCKER_HUB else name


def run_credential_helper(helper: str, server_url: str, *, timeout: float = 30.0) -> str | None:
    """Run ``docker-credential-<helper> get``; its stdout, or None when it has nothing.

    Neither its stdout nor its stderr is logged: both may carry secrets.
    """
    binary = shutil.which(f"docker-credential-{helper}")
    if binary is None:
        return None
    try:
        result = subprocess.run(
            [binary, "get"], input=server_url, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("credential helper docker-credential-%s failed to run: %s", helper, type(exc).__name__)
        return None
    if result.returncode != 0:
        log.info("credential helper docker-credential-%s has no credentials for %s", helper, server_url)
        return None
    return result.stdout


HelperRunner = Callable[[str, str], "str | None"]


def _helper_available(helper: str) -> bool:
    return shutil.which(f"docker-credential-{helper}") is not None


class DockerConfig:
    """Credentials from a docker config (``~/.docker/config.json`` or a dockerconfigjson Secret).

    Lookup order follows docker: a ``credHelpers`` entry for the registry, else
    ``credsStore``, else the ``auths`` entry. A helper whose binary is not on PATH is
    skipped (with a warning naming it) and ``auths`` is used. Legacy ``.dockercfg``
    content (registry keys at the top level) is accepted too.
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        source: str,
        run_helper: HelperRunner | None = None,
        helper_available: Callable[[str], bool] = _helper_available,
    ) -> None:
        if not isinstance(data, Mapping):
            raise InvalidInputError(f"{source} is not a docker config: expected a JSON object with 'auths'")
        auths = data.get("auths") if "auths" in data else self._legacy_auths(data)
        if not isinstance(auths, Mapping):
            raise InvalidInputError(f"{source}: 'auths' must be an object keyed by registry")
        helpers = data.get("credHelpers") or {}
        if not isinstance(helpers, Mapping):
            raise InvalidInputError(f"{source}: 'credHelpers' must be an object keyed by registry")
        self.source = source
        self._auths = {normalize_registry(k): v for k, v in auths.items() if isinstance(v, Mapping)}
        self._helpers = {normalize_registry(k): str(v) for k, v in helpers.items() if v}
        store = data.get("credsStore")
        self._store = str(store) if store else None
        self._run_helper: HelperRunner = run_helper or (
            lambda helper, url: run_credential_helper(helper, url)
        )
        self._helper_available = helper_available

    @staticmethod
    def _legacy_auths(data: Mapping[str, Any]) -> Mapping[str, Any]:
        return {k: v for k, v in data.items() if isinstance(v, Mapping) and ("auth" in v or "username" in v)}

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = "dockerconfigjson", **kwargs: Any) -> DockerConfig:
        try:
            data = json.loads(text)
        except ValueError:
            # The text itself is never quoted: it holds credentials.
            raise InvalidInputError(f"{source} is not valid JSON (a dockerconfigjson is expected)") from None
        return cls(data, source=source, **kwargs)

    @classmethod
    def from_file(cls, path: str | Path, **kwargs: Any) -> DockerConfig:
        file = Path(path).expanduser()
        try:
            text = file.read_text()
        except OSError as exc:
            raise InvalidInputError(f"docker config {file} cannot be read: {exc.strerror}") from None
        return cls.from_json(text, source=f"docker config {file}", **kwargs)

    def helper_for(self, registry: str) -> str | None:
        return self._helpers.get(normalize_registry(registry)) or self._store

    def __call__(self, registry: str) -> Credentials | None:
        name = normalize_registry(registry)
        helper = self.helper_for(name)
        if helper is not None:
            if self._helper_available(helper):
                output = self._run_helper(helper, helper_server_url(name))
                found = credentials_from_helper_output(output, helper=helper) if output else None
                if found is not None:
                    return found
            else:
                log.warning(
                    "%s names credential helper docker-credential-%s for %s, which is not on PATH; "
                    "using its 'auths' entry instead",
                    self.source,
                    helper,
                    name,
                )
        entry = self._auths.get(name)
        return self._entry_credentials(entry, registry=name) if entry else None

    def _entry_credentials(self, entry: Mapping[str, Any], *, registry: str) -> Credentials | None:
        source = f"{self.source} (auths entry for {registry})"
        username = entry.get("username")
        password = entry.get("password")
        if entry.get("auth"):
            try:
                decoded = base64.b64decode(str(entry["auth"]), validate=False).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise InvalidInputError(f"{source}: 'auth' is not base64 of 'user:password'") from None
            if ":" not in decoded:
                raise InvalidInputError(f"{source}: 'auth' is not base64 of 'user:password'")
            username, _, password = decoded.partition(":")
        identity_token = entry.get("identitytoken") or None
        registry_token = entry.get("registrytoken") or None
        if not (username or identity_token or registry_token):
            return None
        return Credentials(
            source=source,
            username=str(username) if username else None,
            password=str(password) if password is not None else None,
            identity_token=str(identity_token) if identity_token else None,
            registry_token=str(registry_token) if registry_token else None,
        )


# --- bearer tokens --------------------------------------------------------------------------


def token_request(
    challenge: Challenge, *, scope: str | None, credentials: Credentials | None
) -> httpx.Request:
    """The request that asks ``challenge.realm`` for a token (distribution token spec).

    With an identity token: OAuth2 POST (grant_type=refresh_token). With a user and
    password: GET with Basic. Without credentials: an anonymous GET.
    """
    realm = challenge.realm or ""
    if not realm.startswith(("https://", "http://")):
        raise InvalidInputError(f"registry token realm {realm!r} is not an http(s) URL")
    params: dict[str, str] = {}
    if challenge.service:
        params["service"] = challenge.service
    if scope:
        params["scope"] = scope
    headers = {"User-Agent": _USER_AGENT, "Accept": "application/json"}
    if credentials is not None and credentials.identity_token:
        form = {
            **params,
            "grant_type": "refresh_token",
            "refresh_token": credentials.identity_token,
            "client_id": "airflow-kaniko",
        }
        return httpx.Request("POST", realm, data=form, headers=headers)
    if credentials is not None and credentials.has_basic:
        headers["Authorization"] = _basic(credentials)
    return httpx.Request("GET", realm, params=params, headers=headers)


def parse_token_response(body: bytes) -> tuple[str, float] | None:
    """(token, lifetime in seconds) from a token response; ``token`` or ``access_token``."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    token = data.get("token") or data.get("access_token")
    if not isinstance(token, str) or not token:
        return None
    expires_in = data.get("expires_in")
    # The spec's default and minimum lifetime is 60 s.
    lifetime = float(expires_in) if isinstance(expires_in, (int, float)) and expires_in >= 60 else 60.0
    return token, lifetime


def _basic(credentials: Credentials) -> str:
    pair = f"{credentials.username}:{credentials.password or ''}".encode()
    return "Basic " + base64.b64encode(pair).decode()


class RegistryAuth(httpx.Auth):
    """Registry authentication as an httpx auth flow (one class for sync and async clients).

    Sends what the last challenge asked for (Basic, or a cached Bearer token for the
    request's scope, fetched when missing or expired); on a 401 it re-reads the challenge
    and tries once more. When a token request fails the flow ends with the token
    service's response and ``last_failure`` says what happened, without secrets.
    """

    requires_response_body = True

    def __init__(
        self,
        *,
        registry: str,
        credentials: Credentials | None,
        challenge: Challenge | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.credentials = credentials
        self.challenge = challenge
        self.last_failure: str | None = None
        self._clock = clock
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        scope = scope_for_path(request.url.path)
        authorized: bool | None = False
        if self.challenge is not None and scope is not None:
            authorized = yield from self._authorize(request, self.challenge, scope, fresh=False)
            if authorized is None:
                return
        response = yield request
        if response.status_code != 401:
            return
        challenge = choose_challenge(parse_challenges(response.headers.get_list("www-authenticate")))
        if challenge is None:
            return
        self.challenge = challenge
        if authorized and challenge.scheme == "basic":
            return  # the credentials were sent and refused: asking again will not help
        if (yield from self._authorize(request, challenge, challenge.scope or scope, fresh=True)):
            yield request

    def _authorize(
        self, request: httpx.Request, challenge: Challenge, scope: str | None, *, fresh: bool
    ) -> Generator[httpx.Request, httpx.Response, bool | None]:
        """Set Authorization on ``request``. True: set; False: nothing to send; None: failed."""
        credentials = self.credentials
        if challenge.scheme == "basic":
            if credentials is None or not credentials.has_basic:
                return False
            request.headers["Authorization"] = _basic(credentials)
            return True
        if credentials is not None and credentials.registry_token:
            request.headers["Authorization"] = f"Bearer {credentials.registry_token}"
            return True
        key = (challenge.realm or "", challenge.service or "", scope or "")
        cached = self._tokens.get(key)
        if cached is not None and not fresh and cached[1] > self._clock():
            request.headers["Authorization"] = f"Bearer {cached[0]}"
            return True
        token_response = yield token_request(challenge, scope=scope, credentials=credentials)
        parsed = parse_token_response(token_response.content) if token_response.status_code == 200 else None
        if parsed is None:
            self.last_failure = (
                f"the token service {challenge.realm} answered {token_response.status_code}"
                + ("" if token_response.status_code != 200 else " without a token")
            )
            return None
        token, lifetime = parsed
        # Refresh 10 s early so a token does not expire between the check and its use.
        self._tokens[key] = (token, self._clock() + max(lifetime - 10.0, 1.0))
        request.headers["Authorization"] = f"Bearer {token}"
        return True


# --- retries --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Retries for 429/5xx answers and timeouts: exponential backoff, Retry-After honoured.

    ``attempts`` counts the first try. A Retry-After longer than ``max_delay`` is cut to
    ``max_delay`` (a sensor in reschedule mode is the place for longer waits).
    """

    attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 30.0
    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    current = now or dt.datetime.now(dt.UTC)
    return max((when - current).total_seconds(), 0.0)


def retry_delay(
    policy: RetryPolicy,
    *,
    attempt: int,
    status: int | None,
    retry_after: str | None = None,
    now: dt.datetime | None = None,
) -> float | None:
    """How long to wait before try ``attempt + 1``, or None to stop.

    ``attempt`` is 0 for the first try; ``status`` None means the request timed out.
    """
    if status is not None and status not in policy.statuses:
        return None
    if attempt + 1 >= policy.attempts:
        return None
    backoff = min(policy.base_delay * (2**attempt), policy.max_delay)
    asked = parse_retry_after(retry_after, now=now)
    return min(asked, policy.max_delay) if asked is not None else backoff


# --- endpoints and TLS ----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """How to reach a registry: scheme and whether the TLS certificate is verified."""

    scheme: str
    verify: bool


def endpoints_for(registry: str, insecure_registries: Iterable[str]) -> list[Endpoint]:
    """What to try, in order, for ``registry``.

    Verified HTTPS unless the user marked the registry insecure. ``host:port`` in the
    insecure list means unverified HTTPS, then plain HTTP (as docker and kaniko do);
    ``http://host:port`` means plain HTTP only; ``https://host:port`` unverified HTTPS only.
    """
    name = normalize_registry(registry)
    for entry in insecure_registries:
        text = entry.strip().lower()
        if normalize_registry(text) != name:
            continue
        if text.startswith("http://"):
            return [Endpoint("http", verify=False)]
        if text.startswith("https://"):
            return [Endpoint("https", verify=False)]
        return [Endpoint("https", verify=False), Endpoint("http", verify=False)]
    return [Endpoint("https", verify=True)]


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


# --- manifests ------------------------------------------------------------------------------


def digest_of(body: bytes, algorithm: str = "sha256") -> str:
    """``<algorithm>:<hex>`` of ``body``; sha256 and sha512 are what the OCI spec registers."""
    if algorithm not in ("sha256", "sha512"):
        algorithm = "sha256"
    return f"{algorithm}:{hashlib.new(algorithm, body).hexdigest()}"


def platform_string(platform: Mapping[str, Any]) -> str:
    """``{"os": "linux", "architecture": "arm64", "variant": "v8"}`` -> ``linux/arm64/v8``."""
    parts = [str(platform.get("os") or "unknown"), str(platform.get("architecture") or "unknown")]
    if platform.get("variant"):
        parts.append(str(platform["variant"]))
    return "/".join(parts)


@dataclass(frozen=True)
class ParsedManifest:
    media_type: str
    is_index: bool
    children: tuple[tuple[str, str], ...] = ()  # (digest, platform) for an index
    config_digest: str | None = None


def parse_manifest(body: bytes, *, content_type: str | None = None) -> ParsedManifest:
    """What verification needs from a manifest or index body.

    Index entries without a real platform (BuildKit's attestation manifests say
    ``unknown/unknown``) are left out of ``children``.
    """
    try:
        data = json.loads(body)
    except ValueError:
        raise ValueError("the manifest is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the manifest is not a JSON object")
    header_type = (content_type or "").split(";", 1)[0].strip()
    media_type = str(data.get("mediaType") or header_type or "")
    is_index = media_type in INDEX_MEDIA_TYPES or (
        "manifests" in data and "config" not in data and media_type not in (OCI_MANIFEST, DOCKER_MANIFEST)
    )
    if is_index:
        children = []
        for entry in data.get("manifests") or []:
            if not isinstance(entry, dict) or not entry.get("digest"):
                continue
            platform = entry.get("platform") or {}
            if platform.get("os") in (None, "", "unknown"):
                continue
            children.append((str(entry["digest"]), platform_string(platform)))
        return ParsedManifest(media_type=media_type or OCI_INDEX, is_index=True, children=tuple(children))
    config = data.get("config") or {}
    return ParsedManifest(
        media_type=media_type or OCI_MANIFEST,
        is_index=False,
        config_digest=str(config["digest"]) if isinstance(config, dict) and config.get("digest") else None,
    )


# --- answers --------------------------------------------------------------------------------


class Outcome(enum.StrEnum):
    """What a registry said about one reference."""

    FOUND = "found"
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    DENIED = "denied"
    TLS = "tls"
    UNREACHABLE = "unreachable"
    ERROR = "error"


@dataclass(frozen=True, kw_only=True)
class ImageConfig:
    """One image's config blob, as far as verification cares."""

    manifest_digest: str
    platform: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RegistryAnswer:
    """The registry's answer for one reference, as plain data for ``verification.verify``.

    ``platforms`` and ``configs`` are filled only when asked for. ``detail`` is a message
    safe to show (no credentials).
    """

    reference: ImageReference
    outcome: Outcome
    digest: str | None = None
    media_type: str | None = None
    digest_from_body: bool = False
    platforms: tuple[str, ...] | None = None
    configs: tuple[ImageConfig, ...] | None = None
    detail: str = ""

    @property
    def registry(self) -> str:
        return self.reference.registry


class _Stop(Exception):
    """Internal: end an inspection with this answer."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome
        self.detail = detail


def _registry_error_codes(response: httpx.Response) -> str:
    """The distribution error codes of a response body, e.g. ``MANIFEST_UNKNOWN``."""
    try:
        data = json.loads(response.content) if response.content else None
    except ValueError:
        return ""
    if not isinstance(data, dict) or not isinstance(data.get("errors"), list):
        return ""
    codes = [str(e.get("code")) for e in data["errors"] if isinstance(e, dict) and e.get("code")]
    return ", ".join(codes)


def describe_credentials(credentials: Credentials | None, registry: str) -> str:
    if credentials is None:
        return f"without credentials (none configured for {registry})"
    return f"with credentials from {credentials.source}"


# --- the client -----------------------------------------------------------------------------


@dataclass
class _Session:
    base_url: str
    client: httpx.Client
    auth: RegistryAuth


class RegistryClient:
    """Sync registry client: one ``inspect`` call per reference, failures as answers.

    ``credentials`` maps a registry to its credentials (``DockerConfig``,
    ``StaticCredentials`` or ``chain_credentials`` of them). ``insecure_registries`` as
    in ``endpoints_for``. ``ca_bundle`` adds a CA file to the verified trust store.
    ``transport`` replaces the network in tests; ``sleep`` is the backoff's sleep.
    """

    def __init__(
        self,
        *,
        credentials: CredentialSource | None = None,
        insecure_registries: Iterable[str] = (),
        ca_bundle: str | Path | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credentials = credentials
        self._insecure = tuple(insecure_registries)
        self._ca_bundle = str(ca_bundle) if ca_bundle else None
        self._timeout = timeout
        self._retry = retry or RetryPolicy()
        self._transport = transport
        self._sleep = sleep
        self._clients: dict[bool, httpx.Client] = {}
        self._sessions: dict[str, _Session] = {}

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._sessions.clear()

    def _client(self, verify: bool) -> httpx.Client:
        if verify not in self._clients:
            tls: ssl.SSLContext | bool = False
            if verify:
                tls = httpx.create_ssl_context()
                if self._ca_bundle:
                    tls.load_verify_locations(cafile=self._ca_bundle)
            self._clients[verify] = httpx.Client(
                verify=tls,
                timeout=self._timeout,
                transport=self._transport,
                follow_redirects=True,
                headers={"User-Agent": _USER_AGENT},
            )
        return self._clients[verify]

    # I/O: one request with retries. Everything it decides is retry_delay's.
    def _send(
        self,
        client: httpx.Client,
        method: str,
        url: str,
        *,
        registry: str,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = client.request(method, url, headers=headers, auth=auth)
            except httpx.TimeoutException:
                delay = retry_delay(self._retry, attempt=attempt, status=None)
                if delay is None:
                    raise _Stop(
                        Outcome.UNREACHABLE,
                        f"registry {registry} did not answer within {self._timeout:g}s "
                        f"({attempt + 1} attempt{'s' if attempt else ''})",
                    ) from None
            except httpx.TransportError as exc:
                raise self._transport_failure(exc, registry=registry, url=url) from None
            else:
                delay = retry_delay(
                    self._retry,
                    attempt=attempt,
                    status=response.status_code,
                    retry_after=response.headers.get("retry-after"),
                )
                if delay is None:
                    return response
                log.info(
                    "registry %s answered %s to %s %s; retrying in %.1fs",
                    registry,
                    response.status_code,
                    method,
                    httpx.URL(url).path,
                    delay,
                )
            self._sleep(delay)
            attempt += 1

    @staticmethod
    def _transport_failure(exc: httpx.TransportError, *, registry: str, url: str) -> _Stop:
        ssl_error = _ssl_error(exc)
        if ssl_error is not None:
            reason = (
                getattr(ssl_error, "verify_message", None)
                or getattr(ssl_error, "reason", None)
                or "handshake failed"
            )
            return _Stop(
                Outcome.TLS,
                f"TLS with registry {registry} failed ({reason}); give its CA certificate, or mark "
                f"{registry} insecure if it has no trusted certificate or serves plain HTTP",
            )
        return _Stop(
            Outcome.UNREACHABLE, f"cannot connect to registry {registry} at {httpx.URL(url).host}: {exc}"
        )

    def _session(self, registry: str) -> _Session:
        """Ping ``/v2/`` once per registry: pick the endpoint and learn the challenge."""
        if registry in self._sessions:
            return self._sessions[registry]
        host = api_host(registry)
        candidates = endpoints_for(registry, self._insecure)
        failure: _Stop | None = None
        for endpoint in candidates:
            client = self._client(endpoint.verify)
            base_url = f"{endpoint.scheme}://{host}"
            try:
                response = self._send(client, "GET", f"{base_url}/v2/", registry=registry)
            except _Stop as stop:
                failure = stop
                if stop.outcome in (Outcome.TLS, Outcome.UNREACHABLE):
                    continue
                raise
            if response.status_code not in (200, 401):
                status = f"{response.status_code} {response.reason_phrase}".strip()
                if response.status_code == 429 or response.status_code >= 500:
                    raise _Stop(
                        Outcome.ERROR,
                        f"registry {registry} answered {status} to GET /v2/ "
                        f"after {self._retry.attempts} attempts",
                    )
                raise _Stop(
                    Outcome.ERROR,
                    f"registry {registry} answered {status} to GET /v2/: "
                    "not an OCI distribution (v2) registry API",
                )
            challenge = (
                choose_challenge(parse_challenges(response.headers.get_list("www-authenticate")))
                if response.status_code == 401
                else None
            )
            credentials = self._credentials(registry) if self._credentials else None
            auth = RegistryAuth(registry=registry, credentials=credentials, challenge=challenge)
            session = _Session(base_url=base_url, client=client, auth=auth)
            self._sessions[registry] = session
            return session
        assert failure is not None
        raise failure

    def _get(
        self,
        session: _Session,
        reference: ImageReference,
        path: str,
        *,
        accept: str | None = None,
        method: str = "GET",
    ) -> httpx.Response:
        headers = {"Accept": accept} if accept else None
        response = self._send(
            session.client,
            method,
            f"{session.base_url}/v2/{reference.repository}/{path}",
            registry=reference.registry,
            auth=session.auth,
            headers=headers,
        )
        self._raise_for_answer(response, session=session, reference=reference, what=path)
        return response

    @staticmethod
    def _raise_for_answer(
        response: httpx.Response, *, session: _Session, reference: ImageReference, what: str
    ) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        registry = reference.registry
        credentials = session.auth.credentials
        if status == 401:
            reason = (
                session.auth.last_failure or f"the registry answered 401 Unauthorized for {reference.name}"
            )
            session.auth.last_failure = None
            raise _Stop(
                Outcome.UNAUTHORIZED,
                f"registry {registry} refused access: {reason}, {describe_credentials(credentials, registry)}",
            )
        if status == 403:
            raise _Stop(
                Outcome.DENIED,
                f"registry {registry} denied pull access to {reference.name} (403 Forbidden) "
                f"{describe_credentials(credentials, registry)}",
            )
        if status == 404:
            codes = _registry_error_codes(response)
            raise _Stop(
                Outcome.NOT_FOUND,
                f"{reference} was not found in registry {registry}" + (f" ({codes})" if codes else ""),
            )
        codes = _registry_error_codes(response)
        raise _Stop(
            Outcome.ERROR,
            f"registry {registry} answered {status} {response.reason_phrase} for {what}"
            + (f" ({codes})" if codes else ""),
        )

    def inspect(
        self, reference: ImageReference, *, platforms: bool = False, labels: bool = False
    ) -> RegistryAnswer:
        """Ask the registry for ``reference``: its digest, and platforms / labels if asked.

        HEAD first (cheap, and not counted as a pull by Docker Hub); GET only when the
        registry omits Docker-Content-Digest or the manifest's content is needed.
        """
        try:
            return self._inspect(reference, platforms=platforms, labels=labels)
        except _Stop as stop:
            return RegistryAnswer(reference=reference, outcome=stop.outcome, detail=stop.detail)

    def inspect_all(
        self, references: Iterable[ImageReference], *, platforms: bool = False, labels: bool = False
    ) -> list[RegistryAnswer]:
        return [self.inspect(reference, platforms=platforms, labels=labels) for reference in references]

    def _inspect(self, reference: ImageReference, *, platforms: bool, labels: bool) -> RegistryAnswer:
        session = self._session(reference.registry)
        accept = ", ".join(MANIFEST_ACCEPT)
        path = f"manifests/{reference.ref}"
        head = self._send(
            session.client,
            "HEAD",
            f"{session.base_url}/v2/{reference.repository}/{path}",
            registry=reference.registry,
            auth=session.auth,
            headers={"Accept": accept},
        )
        if head.status_code == 405:  # a registry without HEAD support: GET answers the same
            head = self._get(session, reference, path, accept=accept)
        else:
            self._raise_for_answer(head, session=session, reference=reference, what=path)
        digest = head.headers.get("docker-content-digest") or None
        media_type = head.headers.get("content-type", "").split(";", 1)[0].strip() or None
        digest_from_body = False
        body: bytes | None = head.content if head.request.method == "GET" else None
        if digest is None or platforms or labels:
            if body is None:
                get = self._get(session, reference, path, accept=accept)
                body = get.content
                digest = digest or get.headers.get("docker-content-digest") or None
                media_type = get.headers.get("content-type", "").split(";", 1)[0].strip() or media_type
            if digest is None:
                algorithm = (reference.digest or "sha256:").split(":", 1)[0]
                digest = digest_of(body, algorithm)
                digest_from_body = True
        answer_platforms: tuple[str, ...] | None = None
        configs: tuple[ImageConfig, ...] | None = None
        if body is not None and (platforms or labels):
            try:
                parsed = parse_manifest(body, content_type=media_type)
            except ValueError as exc:
                raise _Stop(
                    Outcome.ERROR, f"registry {reference.registry} returned for {reference}: {exc}"
                ) from None
            media_type = parsed.media_type
            if parsed.is_index:
                answer_platforms = tuple(platform for _, platform in parsed.children)
                if labels:
                    configs = tuple(
                        self._child_config(session, reference, child, platform)
                        for child, platform in parsed.children
                    )
            else:
                config = self._config(
                    session, reference, manifest_digest=digest, config_digest=parsed.config_digest
                )
                configs = (config,)
                answer_platforms = (config.platform,)
        return RegistryAnswer(
            reference=reference,
            outcome=Outcome.FOUND,
            digest=digest,
            media_type=media_type,
            digest_from_body=digest_from_body,
            platforms=answer_platforms if platforms else None,
            configs=configs if labels else None,
        )

    def _child_config(
        self, session: _Session, reference: ImageReference, child: str, platform: str
    ) -> ImageConfig:
        child_ref = reference.with_digest(child)
        response = self._get(session, child_ref, f"manifests/{child}", accept=", ".join(MANIFEST_ACCEPT))
        parsed = parse_manifest(response.content, content_type=response.headers.get("content-type"))
        config = self._config(session, child_ref, manifest_digest=child, config_digest=parsed.config_digest)
        return ImageConfig(manifest_digest=child, platform=platform, labels=config.labels)

    def _config(
        self, session: _Session, reference: ImageReference, *, manifest_digest: str, config_digest: str | None
    ) -> ImageConfig:
        if not config_digest:
            raise _Stop(Outcome.ERROR, f"the manifest of {reference} names no config blob")
        response = self._get(session, reference, f"blobs/{config_digest}")
        try:
            data = json.loads(response.content)
        except ValueError:
            raise _Stop(
                Outcome.ERROR, f"the config blob {config_digest} of {reference} is not JSON"
            ) from None
        if not isinstance(data, dict):
            raise _Stop(Outcome.ERROR, f"the config blob {config_digest} of {reference} is not a JSON object")
        image_config = data.get("config") or {}
        raw_labels = image_config.get("Labels") if isinstance(image_config, dict) else None
        found_labels = (
            {str(k): str(v) for k, v in (raw_labels or {}).items()} if isinstance(raw_labels, dict) else {}
        )
        return ImageConfig(
            manifest_digest=manifest_digest, platform=platform_string(data), labels=found_labels
        )
