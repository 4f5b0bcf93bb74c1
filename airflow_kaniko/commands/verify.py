"""``airflow-kaniko verify REF``: is REF in its registry (and does it have this digest)?

Exit status: 0 and the digest on stdout when REF resolves (and matches ``--digest``);
1 when the registry's answer disproves it (not found, another digest, platforms, labels);
2 for invalid input; 3 when the registry could not be asked (refused credentials, TLS,
unreachable). Errors are one line on stderr, never a traceback, never a credential.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from airflow_kaniko.errors import InvalidInputError, KanikoError, RegistryError, VerificationError
from airflow_kaniko.reference import parse_reference
from airflow_kaniko.registry import DockerConfig, RegistryClient
from airflow_kaniko.verification import parse_labels, validate_digest, verify

__all__ = ["EXIT_DISPROVED", "EXIT_INVALID", "EXIT_OK", "EXIT_REGISTRY", "add_parser", "run"]

EXIT_OK = 0
EXIT_DISPROVED = 1
EXIT_INVALID = 2
EXIT_REGISTRY = 3
_PROG = "airflow-kaniko verify"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "verify",
        help="check that an image is in its registry, optionally with a given digest",
        description=(
            "Ask the image's registry for REF (a tag or a digest reference). Prints the digest "
            "and exits 0 when it resolves (and matches --digest); otherwise prints one line on "
            "stderr and exits 1 (disproved), 2 (invalid input) or 3 (registry not reachable or "
            "refused access)."
        ),
    )
    parser.add_argument("reference", metavar="REF", help="image reference, e.g. ghcr.io/org/app:1.2")
    parser.add_argument("--digest", metavar="sha256:...", help="the digest REF must resolve to")
    parser.add_argument(
        "--docker-config",
        metavar="PATH",
        help="docker config.json with credentials (default: $DOCKER_CONFIG/config.json or "
        "~/.docker/config.json when present); credHelpers are used when installed",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="REF's registry may serve plain HTTP or an unverified certificate",
    )
    parser.add_argument("--ca-file", metavar="PATH", help="a CA certificate (PEM) to trust for the registry")
    parser.add_argument(
        "--platform",
        action="append",
        dest="platforms",
        metavar="OS/ARCH[/VARIANT]",
        help="expected platform (repeat for an index; the set must match exactly)",
    )
    parser.add_argument(
        "--label",
        action="append",
        dest="labels",
        metavar="KEY=VALUE",
        help="a label the image config must carry (repeatable)",
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per registry request (default 30)"
    )
    parser.set_defaults(run=run)
    return parser


def default_docker_config() -> Path | None:
    """Where docker itself looks: $DOCKER_CONFIG/config.json, else ~/.docker/config.json."""
    directory = os.environ.get("DOCKER_CONFIG")
    path = Path(directory) / "config.json" if directory else Path.home() / ".docker" / "config.json"
    return path if path.is_file() else None


def _check(args: argparse.Namespace) -> str:
    reference = parse_reference(args.reference, what="REF")
    digest = validate_digest(args.digest, what="--digest") if args.digest else None
    labels = parse_labels(args.labels)
    platforms = list(args.platforms or [])
    config_path = Path(args.docker_config) if args.docker_config else default_docker_config()
    credentials = DockerConfig.from_file(config_path) if config_path else None
    if args.ca_file and not Path(args.ca_file).is_file():
        raise InvalidInputError(f"--ca-file {args.ca_file!r} is not a file")
    with RegistryClient(
        credentials=credentials,
        insecure_registries=[reference.registry] if args.insecure else [],
        ca_bundle=args.ca_file,
        timeout=args.timeout,
    ) as client:
        answer = client.inspect(reference, platforms=bool(platforms), labels=bool(labels))
    verdict = verify(
        reported_digest=digest,
        answers=[answer],
        expected_platforms=platforms or None,
        expected_labels=labels or None,
    )
    verdict.raise_for_problems()
    assert verdict.digest is not None
    return verdict.digest


def run(args: argparse.Namespace) -> int:
    try:
        digest = _check(args)
    except InvalidInputError as exc:
        return _fail(exc, EXIT_INVALID)
    except VerificationError as exc:
        return _fail(exc, EXIT_DISPROVED)
    except (RegistryError, KanikoError) as exc:
        return _fail(exc, EXIT_REGISTRY)
    print(digest)
    return EXIT_OK


def _fail(exc: Exception, code: int) -> int:
    message = " ".join(str(exc).split())  # one line, whatever the message held
    print(f"{_PROG}: {message}", file=sys.stderr)
    return code
