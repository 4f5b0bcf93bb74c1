from __future__ import annotations

import pytest

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.reference import parse_reference

D = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", None, None),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("org/app", "docker.io", "org/app", None, None),
        ("localhost:5000/app:v1", "localhost:5000", "app", "v1", None),
        ("ghcr.io/org/sub/app:1.0_rc-1", "ghcr.io", "org/sub/app", "1.0_rc-1", None),
        (f"reg.example.com/app@{D}", "reg.example.com", "app", None, D),
        (f"reg.example.com/app:1@{D}", "reg.example.com", "app", "1", D),
        ("127.0.0.1:5000/a__b/c-d.e:x", "127.0.0.1:5000", "a__b/c-d.e", "x", None),
    ],
)
def test_parses_distribution_grammar(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " app",
        "reg.io/App",
        "reg.io/app:",
        "reg.io/app:-x",
        "reg.io/a//b",
        "reg.io/a-",
        "reg.io/app@sha256:short",
        "reg.io/app:" + "x" * 129,
    ],
)
def test_rejects_invalid_references_naming_them(text: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_reference(text)
    assert repr(text) in str(err.value)


def test_push_destination_may_not_carry_a_digest() -> None:
    with pytest.raises(InvalidInputError, match="push destination takes a tag only"):
        parse_reference(f"reg.io/app@{D}", allow_digest=False)
