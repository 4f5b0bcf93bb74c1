"""The same kaniko build without cache, with an empty cache, and with a warm cache.

    .venv/bin/python benchmarks/kaniko_cache.py [--size-mb 64] [--loops 1500000] [--repeat 3]

Needs what the e2e tier needs (root, util-linux, docker-registry, skopeo, busybox-static,
Go for the executor). Each build is the Job that ``render_build`` renders, run by
``tests/support/kaniko_runner.py`` against docker-registry on loopback (htpasswd + TLS):

- base: a busybox-static image pushed to the registry first;
- ``RUN dd`` writes ``--size-mb`` of random data and hashes it (a big layer to snapshot, push,
  and, with a warm cache, to pull and extract instead);
- ``RUN`` a busybox shell loop of ``--loops`` iterations (CPU time the cache saves);
- ``COPY`` of a file that changes every build (so the last step always runs).

Modes, each ``--repeat`` times, alternating: ``no cache`` (``cache=False``), ``cold cache``
(``cache=True`` with a fresh ``--cache-repo``: the build also pushes its layers to the cache),
``warm cache`` (the same ``--cache-repo`` again: kaniko finds the RUN layers). The time is the
executor container's wall time, from start to exit; the median and best of each are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_kaniko.build import KanikoBuild
from tests.e2e.helpers import BuildRun, run_rendered_build, write_busybox_layout, write_context
from tests.support.kaniko_runner import build_executor, kaniko_unavailable_reason
from tests.support.registry import push_layout, registry_unavailable_reason, start_registry

DOCKERFILE = """\
ARG BASE
FROM ${BASE}
ARG SIZE_MB
ARG LOOPS
RUN dd if=/dev/urandom of=/blob bs=1048576 count=${SIZE_MB} 2>/dev/null && sha256sum /blob > /blob.sha256
RUN i=0; while [ $i -lt ${LOOPS} ]; do i=$((i+1)); done; echo $i > /loops.txt
COPY stamp.txt /stamp.txt
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--loops", type=int, default=1_500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    for reason in (kaniko_unavailable_reason(), registry_unavailable_reason()):
        if reason:
            print(f"cannot run: {reason}", file=sys.stderr)
            return 2
    executor = build_executor()
    print(f"executor: {executor}")
    with tempfile.TemporaryDirectory(prefix="kaniko-bench-") as tmp:
        work = Path(tmp)
        registry = start_registry(work / "registry", auth="basic", tls=True)
        try:
            base = write_busybox_layout(work / "busybox", tag="1.35")
            push_layout(registry, base, "base/busybox:1.35")
            context = write_context(work / "context", {"Dockerfile": DOCKERFILE})
            build_args = {
                "BASE": f"{registry.host}/base/busybox:1.35",
                "SIZE_MB": str(args.size_mb),
                "LOOPS": str(args.loops),
            }

            def run(*, cache_repo: str | None) -> BuildRun:
                (context / "stamp.txt").write_text(uuid.uuid4().hex)
                build = KanikoBuild(
                    context="local:///replaced",
                    destinations=[f"{registry.host}/bench/app:latest"],
                    build_args=build_args,
                    cache=cache_repo is not None,
                    cache_repo=cache_repo,
                )
                result = run_rendered_build(
                    build, executor=executor, registry=registry, workdir=work / "pods", context_dir=context
                )
                if result.result.exit_code != 0:
                    raise SystemExit(f"build failed ({result.result.exit_code}):\n{result.log[-3000:]}")
                return result

            times: dict[str, list[float]] = {"no cache": [], "cold cache": [], "warm cache": []}
            hits: dict[str, list[int]] = {k: [] for k in times}
            for round_ in range(args.repeat):
                cache_repo = f"{registry.host}/bench/cache-{round_}"
                for mode, repo in (
                    ("no cache", None),
                    ("cold cache", cache_repo),
                    ("warm cache", cache_repo),
                ):
                    built = run(cache_repo=repo)
                    times[mode].append(built.result.duration_seconds)
                    hits[mode].append(built.log.count("Using caching version of cmd"))
                    print(
                        f"  round {round_ + 1} {mode:<10} {built.result.duration_seconds:6.2f} s "
                        f"(cached RUN steps: {hits[mode][-1]})",
                        flush=True,
                    )
        finally:
            registry.stop()

    print(
        f"\nkaniko build, {args.size_mb} MiB RUN layer + {args.loops} shell loop iterations, {args.repeat} rounds"
    )
    print(f"{'mode':<12}{'median s':>10}{'best s':>10}{'cached RUN steps':>18}")
    for mode, values in times.items():
        print(f"{mode:<12}{statistics.median(values):>10.2f}{min(values):>10.2f}{max(hits[mode]):>18}")
    cold, warm = statistics.median(times["cold cache"]), statistics.median(times["warm cache"])
    print(f"warm cache / cold cache: {warm / cold:.2f} (below 1: the cache saves time)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
