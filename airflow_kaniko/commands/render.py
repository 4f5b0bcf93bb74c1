"""``airflow-kaniko render``: print the Job manifest the operator would create, as YAML."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from airflow_kaniko.build import DEFAULT_EXECUTOR_IMAGE, JobSettings, KanikoBuild, render_build
from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.naming import BuildIdentity


def _pairs(values: list[str] | None, *, what: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"{what} {item!r} is not valid: expected KEY=VALUE")
        result[key] = value
    return result


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "render",
        help="print the Job manifest for a build (pipe it to kubectl apply -f -)",
        description="Print the kaniko Job manifest the operator would create, as YAML.",
    )
    parser.add_argument(
        "--destination", action="append", required=True, help="image reference to push (repeatable)"
    )
    parser.add_argument(
        "--context", required=True, help="git://, s3://, gs://, https:// (Azure), pvc://, local://"
    )
    parser.add_argument("--dockerfile", default="Dockerfile")
    parser.add_argument("--build-arg", action="append", metavar="K=V")
    parser.add_argument("--target")
    parser.add_argument("--label", action="append", metavar="K=V")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--secret", help="existing kubernetes.io/dockerconfigjson Secret for the push")
    parser.add_argument("--cache", action="store_true", help="use kaniko's layer cache")
    parser.add_argument("--cache-repo")
    parser.add_argument("--executor-image", default=DEFAULT_EXECUTOR_IMAGE)
    parser.add_argument("--name", default="manual", help="task id used to name the Job")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    build = KanikoBuild(
        context=args.context,
        destinations=args.destination,
        dockerfile=args.dockerfile,
        build_args=_pairs(args.build_arg, what="--build-arg"),
        target=args.target,
        labels=_pairs(args.label, what="--label"),
        cache=args.cache or bool(args.cache_repo),
        cache_repo=args.cache_repo,
    )
    settings = JobSettings(
        namespace=args.namespace, docker_config_secret=args.secret, executor_image=args.executor_image
    )
    identity = BuildIdentity(dag_id="cli", task_id=args.name, run_id="render")
    rendered = render_build(build, settings, identity)
    if rendered.context.local_directory is not None:
        raise InvalidInputError(
            f"context {args.context!r} is a local directory, which the operator packs into a ConfigMap at run time; "
            "render needs a context the cluster can read (git://, s3://, gs://, https://, pvc://)"
        )
    yaml.safe_dump(rendered.job, sys.stdout, sort_keys=False)
    return 0
