"""The verdict on plain data: what a user reads when verification fails."""

from __future__ import annotations

import pytest

from airflow_kaniko.errors import InvalidInputError, RegistryError, VerificationError
from airflow_kaniko.reference import parse_reference
from airflow_kaniko.registry import ImageConfig, Outcome, RegistryAnswer
from airflow_kaniko.verification import (
    ProblemKind,
    normalize_platform,
    parse_labels,
    plan_verification,
    verify,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
INDEX = "application/vnd.oci.image.index.v1+json"


def found(ref: str, digest: str = D1, **kwargs: object) -> RegistryAnswer:
    return RegistryAnswer(reference=parse_reference(ref), outcome=Outcome.FOUND, digest=digest, **kwargs)  # type: ignore[arg-type]


def failed(ref: str, outcome: Outcome, detail: str) -> RegistryAnswer:
    return RegistryAnswer(reference=parse_reference(ref), outcome=outcome, detail=detail)


def test_every_destination_at_the_reported_digest_is_ok() -> None:
    verdict = verify(reported_digest=D1, answers=[found("reg.io/app:1"), found("reg.io/app:latest")])
    assert verdict.ok and verdict.digest == D1
    verdict.raise_for_problems()


def test_digest_mismatch_names_both_digests_and_the_reference() -> None:
    verdict = verify(reported_digest=D1, answers=[found("reg.io/app:1", D2)])
    assert not verdict.ok
    assert "reg.io/app:1" in verdict.message and D1 in verdict.message and D2 in verdict.message
    assert verdict.retryable  # a tag not yet updated everywhere
    with pytest.raises(VerificationError):
        verdict.raise_for_problems()


def test_mismatch_says_when_the_digest_was_computed_from_the_body() -> None:
    verdict = verify(reported_digest=D1, answers=[found("reg.io/app:1", D2, digest_from_body=True)])
    assert "no Docker-Content-Digest" in verdict.message


def test_not_found_names_the_reference() -> None:
    verdict = verify(
        reported_digest=D1,
        answers=[
            found("reg.io/app:1"),
            failed("reg.io/app:2", Outcome.NOT_FOUND, "reg.io/app:2 was not found in registry reg.io"),
        ],
    )
    assert [p.kind for p in verdict.problems] == [ProblemKind.NOT_FOUND]
    assert "reg.io/app:2" in verdict.message and verdict.retryable


def test_unauthorized_fails_for_good_naming_the_registry() -> None:
    verdict = verify(
        reported_digest=D1,
        answers=[failed("reg.io/app:1", Outcome.UNAUTHORIZED, "registry reg.io refused access")],
    )
    assert verdict.problems[0].kind is ProblemKind.UNAUTHORIZED
    assert "reg.io" in verdict.message and not verdict.retryable
    with pytest.raises(RegistryError):
        verdict.raise_for_problems()


def test_a_pinned_digest_reference_must_resolve_to_its_digest() -> None:
    verdict = verify(reported_digest=None, answers=[found(f"reg.io/app@{D1}", D2)])
    assert not verdict.ok and D1 in verdict.message and D2 in verdict.message


def test_without_a_reported_digest_destinations_must_agree() -> None:
    verdict = verify(reported_digest=None, answers=[found("reg.io/app:1", D1), found("reg.io/app:2", D2)])
    assert verdict.problems[0].kind is ProblemKind.INCONSISTENT
    assert verify(reported_digest=None, answers=[found("reg.io/app:1")]).digest == D1


def test_reported_digest_is_compared_case_insensitively_and_validated() -> None:
    assert verify(reported_digest=D1.upper().replace("SHA256", "sha256"), answers=[found("reg.io/a:1")]).ok
    with pytest.raises(InvalidInputError, match="sha256:<64 hex"):
        verify(reported_digest="sha256:abc", answers=[found("reg.io/a:1")])


def test_nothing_to_verify_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="nothing to verify"):
        verify(reported_digest=D1, answers=[])


@pytest.mark.parametrize(
    ("text", "normal"),
    [("linux/arm64/v8", "linux/arm64"), ("linux/arm", "linux/arm/v7"), ("Linux/x86_64", "linux/amd64")],
)
def test_platform_spellings_are_normalised(text: str, normal: str) -> None:
    assert normalize_platform(text) == normal


def test_platform_without_architecture_is_invalid() -> None:
    with pytest.raises(InvalidInputError, match="os/architecture"):
        normalize_platform("linux")


def test_index_platforms_must_match_the_expected_set() -> None:
    answer = found("reg.io/app:1", platforms=("linux/amd64", "linux/arm64/v8"), media_type=INDEX)
    assert verify(reported_digest=D1, answers=[answer], expected_platforms=["linux/arm64", "linux/amd64"]).ok
    verdict = verify(reported_digest=D1, answers=[answer], expected_platforms=["linux/amd64", "linux/s390x"])
    assert verdict.problems[0].kind is ProblemKind.PLATFORMS
    assert "missing linux/s390x" in verdict.message and "not expected linux/arm64" in verdict.message
    assert not verdict.retryable


def test_labels_are_checked_in_every_platform_config() -> None:
    configs = (
        ImageConfig(manifest_digest=D1, platform="linux/amd64", labels={"team": "data"}),
        ImageConfig(manifest_digest=D2, platform="linux/arm64", labels={"team": "web"}),
    )
    verdict = verify(
        reported_digest=D1,
        answers=[found("reg.io/app:1", configs=configs)],
        expected_labels={"team": "data", "tier": "1"},
    )
    messages = [p.message for p in verdict.problems]
    assert any("linux/arm64" in m and "'web'" in m and "'data'" in m for m in messages)
    assert sum("'tier' is missing" in m for m in messages) == 2
    with pytest.raises(VerificationError):
        verdict.raise_for_problems()


def test_plan_from_the_build_xcom_as_dict_or_rendered_text() -> None:
    xcom = {
        "image": f"reg.io/app@{D1}",
        "digest": D1,
        "destinations": ["reg.io/app:1", "reg.io/app:latest"],
        "job_name": "kaniko-x",
        "namespace": "builds",
    }
    refs, digest = plan_verification(build=xcom)
    assert [str(r) for r in refs] == ["reg.io/app:1", "reg.io/app:latest"] and digest == D1
    assert plan_verification(build=str(xcom)) == (refs, D1)  # Airflow renders a dict template as its repr
    explicit, pinned = plan_verification(build=xcom, references=["reg.io/other:2"], digest=D2)
    assert [str(r) for r in explicit] == ["reg.io/other:2"] and pinned == D2


def test_plan_rejects_bad_references_and_empty_input() -> None:
    with pytest.raises(InvalidInputError, match="UPPER"):
        plan_verification(references=["reg.io/UPPER:1"])
    with pytest.raises(InvalidInputError, match="nothing to verify"):
        plan_verification(build={"digest": D1, "destinations": []})
    with pytest.raises(InvalidInputError, match="XCom"):
        plan_verification(build="not a mapping")


def test_labels_from_cli_pairs() -> None:
    assert parse_labels(["a=b", "c=d=e"]) == {"a": "b", "c": "d=e"}
    with pytest.raises(InvalidInputError, match="KEY=VALUE"):
        parse_labels(["novalue"])
