"""The verdict: do the registry's answers prove the build? Pure: plain data in, plain data out.

kaniko writes its digest file before it pushes, so the digest a build reports proves
nothing by itself. ``verify`` takes that digest and what the registry answered for every
destination (``registry.RegistryAnswer``) and says ok, or lists each problem with a
message that names what a user needs: both digests on a mismatch, the reference when it
is not found, the registry (never the secret) when access is refused.

The operator, the sensor and the CLI all call ``verify``; none of them decides anything
about the answers on its own. ``Verdict.retryable`` tells a sensor whether waiting could
help (an eventually consistent registry that does not show the tag yet) or not (refused
credentials, a TLS failure, a wrong label).
"""

from __future__ import annotations

import ast
import enum
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_kaniko.errors import InvalidInputError, RegistryError, VerificationError
from airflow_kaniko.reference import ImageReference, parse_reference
from airflow_kaniko.registry import INDEX_MEDIA_TYPES, Outcome, RegistryAnswer

__all__ = [
    "Problem",
    "ProblemKind",
    "Verdict",
    "normalize_platform",
    "parse_labels",
    "plan_verification",
    "read_build_xcom",
    "validate_digest",
    "verify",
]

_DIGEST = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "i386": "386", "i686": "386"}


class ProblemKind(enum.StrEnum):
    NOT_FOUND = "not_found"
    DIGEST_MISMATCH = "digest_mismatch"
    INCONSISTENT = "inconsistent"
    UNAUTHORIZED = "unauthorized"
    TLS = "tls"
    UNREACHABLE = "unreachable"
    REGISTRY_ERROR = "registry_error"
    PLATFORMS = "platforms"
    LABELS = "labels"


# Problems an eventually consistent registry can show for a while after a good push.
_TRANSIENT = frozenset(
    {
        ProblemKind.NOT_FOUND,
        ProblemKind.DIGEST_MISMATCH,
        ProblemKind.INCONSISTENT,
        ProblemKind.UNREACHABLE,
        ProblemKind.REGISTRY_ERROR,
    }
)
# Problems that mean the registry could not be asked (RegistryError), not that it said no.
_CANNOT_ASK = frozenset(
    {ProblemKind.UNAUTHORIZED, ProblemKind.TLS, ProblemKind.UNREACHABLE, ProblemKind.REGISTRY_ERROR}
)
_OUTCOME_KIND = {
    Outcome.NOT_FOUND: ProblemKind.NOT_FOUND,
    Outcome.UNAUTHORIZED: ProblemKind.UNAUTHORIZED,
    Outcome.DENIED: ProblemKind.UNAUTHORIZED,
    Outcome.TLS: ProblemKind.TLS,
    Outcome.UNREACHABLE: ProblemKind.UNREACHABLE,
    Outcome.ERROR: ProblemKind.REGISTRY_ERROR,
}


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    reference: str
    message: str


@dataclass(frozen=True)
class Verdict:
    """``ok`` and the verified ``digest``, or the problems found (one per failed check)."""

    digest: str | None
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def retryable(self) -> bool:
        """True when every problem may go away by waiting (eventual consistency)."""
        return bool(self.problems) and all(p.kind in _TRANSIENT for p in self.problems)

    @property
    def message(self) -> str:
        return "; ".join(p.message for p in self.problems) if self.problems else f"verified {self.digest}"

    def raise_for_problems(self) -> None:
        """Raise VerificationError when an answer disproves the build, else RegistryError."""
        if self.ok:
            return
        if any(p.kind not in _CANNOT_ASK for p in self.problems):
            raise VerificationError(self.message)
        raise RegistryError(self.message)


def validate_digest(text: str, *, what: str = "digest") -> str:
    """Return ``text`` in canonical (lower-case) form; InvalidInputError if it is no digest."""
    digest = text.strip().lower() if isinstance(text, str) else ""
    if not _DIGEST.match(digest):
        raise InvalidInputError(
            f"{what} {text!r} is not valid: expected sha256:<64 hex digits> (or sha512:<128 hex digits>)"
        )
    return digest


def normalize_platform(text: str) -> str:
    """``linux/arm64/v8`` -> ``linux/arm64``, ``linux/arm`` -> ``linux/arm/v7``, ``x86_64`` -> ``amd64``.

    Follows containerd's platform normalisation so that equivalent spellings compare equal.
    """
    parts = text.strip().lower().split("/") if isinstance(text, str) else []
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidInputError(f"platform {text!r} is not valid: expected os/architecture[/variant]")
    os_name, arch = parts[0], _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else None
    if (arch, variant) in {("arm64", "v8"), ("amd64", "v1")}:
        variant = None
    elif arch == "arm" and variant is None:
        variant = "v7"
    return "/".join(p for p in (os_name, arch, variant) if p)


def _platform_problems(answer: RegistryAnswer, expected: Sequence[str]) -> list[Problem]:
    wanted = {normalize_platform(p) for p in expected}
    actual_list = [normalize_platform(p) for p in (answer.platforms or ()) if p.count("/") in (1, 2)]
    actual = set(actual_list)
    if wanted == actual:
        return []
    missing = sorted(wanted - actual)
    extra = sorted(actual - wanted)
    details = []
    if missing:
        details.append(f"missing {', '.join(missing)}")
    if extra:
        details.append(f"not expected {', '.join(extra)}")
    kind = "the index" if answer.media_type in INDEX_MEDIA_TYPES else "the image"
    return [
        Problem(
            ProblemKind.PLATFORMS,
            str(answer.reference),
            f"{answer.reference}: expected platforms {', '.join(sorted(wanted))}; {kind} has "
            f"{', '.join(sorted(actual)) or 'none'} ({'; '.join(details)})",
        )
    ]


def _label_problems(answer: RegistryAnswer, expected: Mapping[str, str]) -> list[Problem]:
    problems = []
    for config in answer.configs or ():
        where = f"{answer.reference}" + (f" ({config.platform})" if len(answer.configs or ()) > 1 else "")
        for key, value in expected.items():
            if key not in config.labels:
                message = f"{where}: label {key!r} is missing (expected {value!r})"
            elif config.labels[key] != value:
                message = f"{where}: label {key!r} is {config.labels[key]!r}, expected {value!r}"
            else:
                continue
            problems.append(Problem(ProblemKind.LABELS, str(answer.reference), message))
    return problems


def verify(
    *,
    reported_digest: str | None,
    answers: Iterable[RegistryAnswer],
    expected_platforms: Sequence[str] | None = None,
    expected_labels: Mapping[str, str] | None = None,
) -> Verdict:
    """Every destination must resolve, to ``reported_digest`` when given.

    Without a reported digest, all destinations must at least resolve to the same digest.
    A reference that pins a digest (``name@sha256:...``) must resolve to that digest too.
    ``expected_platforms`` is the exact set of platforms of the image (an index's entries,
    or a single image's config), compared after normalisation; ``expected_labels`` must
    be present with these values in the config of every image (every platform of an index).
    """
    answers = list(answers)
    if not answers:
        raise InvalidInputError("nothing to verify: no image references were given")
    reported = validate_digest(reported_digest, what="reported digest") if reported_digest else None
    problems: list[Problem] = []
    resolved: list[tuple[RegistryAnswer, str]] = []
    for answer in answers:
        name = str(answer.reference)
        if answer.outcome is not Outcome.FOUND or not answer.digest:
            kind = _OUTCOME_KIND.get(answer.outcome, ProblemKind.REGISTRY_ERROR)
            message = answer.detail or f"{name}: registry {answer.registry} answered {answer.outcome.value}"
            problems.append(Problem(kind, name, message))
            continue
        actual = answer.digest.lower()
        how = (
            " (computed from the manifest: the registry sent no Docker-Content-Digest)"
            if answer.digest_from_body
            else ""
        )
        pinned = answer.reference.digest.lower() if answer.reference.digest else None
        if pinned and actual != pinned:
            problems.append(
                Problem(
                    ProblemKind.DIGEST_MISMATCH,
                    name,
                    f"{name} resolves to {actual}{how} in registry {answer.registry}, not to the pinned {pinned}",
                )
            )
            continue
        if reported and actual != reported:
            problems.append(
                Problem(
                    ProblemKind.DIGEST_MISMATCH,
                    name,
                    f"{name} resolves to {actual}{how} in registry {answer.registry}, "
                    f"but the build reported {reported}",
                )
            )
            continue
        resolved.append((answer, actual))
        if expected_platforms:
            problems.extend(_platform_problems(answer, expected_platforms))
        if expected_labels:
            problems.extend(_label_problems(answer, expected_labels))
    digests = {digest for _, digest in resolved}
    if reported is None and len(digests) > 1:
        pairs = ", ".join(f"{answer.reference} -> {digest}" for answer, digest in resolved)
        problems.append(
            Problem(ProblemKind.INCONSISTENT, "", f"the destinations resolve to different digests: {pairs}")
        )
    digest = reported or (next(iter(digests)) if len(digests) == 1 else None)
    return Verdict(digest=digest if not problems else reported, problems=tuple(problems))


def _as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()] if "," in value else [value.strip()]
    return [str(v) for v in value]


def read_build_xcom(build: Mapping[str, Any] | str) -> Mapping[str, Any]:
    """The build operator's XCom, whether Airflow rendered it as a dict or as its text."""
    if isinstance(build, Mapping):
        return build
    text = build.strip()
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, Mapping):
            return value
    raise InvalidInputError(
        "build is not the build operator's XCom: expected a mapping with 'destinations' and 'digest' "
        f"(got {text[:80]!r})"
    )


def plan_verification(
    *,
    build: Mapping[str, Any] | str | None = None,
    references: str | Sequence[str] | None = None,
    digest: str | None = None,
) -> tuple[list[ImageReference], str | None]:
    """What to verify: (references, digest) from the build's XCom and/or explicit values.

    Explicit ``references`` and ``digest`` win over the XCom's ``destinations`` and
    ``digest``. Every reference is validated before any registry is asked.
    """
    texts = _as_list(references)
    reported = digest or None
    if build is not None and build != "":
        result = read_build_xcom(build)
        if not texts:
            texts = _as_list(result.get("destinations"))
            if not texts and result.get("image"):
                texts = [str(result["image"])]
        reported = reported or (str(result["digest"]) if result.get("digest") else None)
    if not texts:
        raise InvalidInputError(
            "nothing to verify: give references, or the build operator's XCom with 'destinations'"
        )
    parsed = [parse_reference(text, what="image reference to verify") for text in texts]
    return parsed, validate_digest(reported, what="reported digest") if reported else None


def parse_labels(items: Iterable[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["a=b", "c=d"]`` (the CLI's form) or a mapping -> ``{"a": "b", "c": "d"}``."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    labels = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"label {item!r} is not valid: expected KEY=VALUE")
        labels[key] = value
    return labels
