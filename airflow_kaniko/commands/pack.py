"""`airflow-kaniko pack DIR -o FILE`: pack a build context as KanikoContextOperator does.

Prints the sha256 of FILE on stdout. Invalid input (a missing directory or Dockerfile, an
unreadable file, a bad .dockerignore pattern, an output that cannot be written) exits 2 with one
line on stderr that names the bad value.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.packing import DEFAULT_COMPRESSLEVEL, pack_directory

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "pack",
        help="pack a build context directory into a deterministic tar.gz (honours .dockerignore)",
        description=(
            "Pack DIR into FILE as a deterministic tar.gz that kaniko reads as its context, "
            "honouring DIR/.dockerignore with Docker's semantics. Prints the sha256 of FILE."
        ),
    )
    parser.add_argument("directory", metavar="DIR", help="the build context directory")
    parser.add_argument("-o", "--output", metavar="FILE", required=True, help="where to write the tar.gz")
    parser.add_argument(
        "-f",
        "--dockerfile",
        default="Dockerfile",
        metavar="PATH",
        help="the Dockerfile, relative to DIR (default: Dockerfile); always packed",
    )
    parser.add_argument(
        "--level",
        type=int,
        default=DEFAULT_COMPRESSLEVEL,
        metavar="N",
        help=f"gzip compression level 0-9 (default: {DEFAULT_COMPRESSLEVEL}, as gzip)",
    )
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    try:
        result = pack_directory(args.directory, args.output, dockerfile=args.dockerfile, level=args.level)
    except InvalidInputError as e:
        print(f"airflow-kaniko pack: {e}", file=sys.stderr)
        return 2
    print(result.sha256)
    return 0
