"""Pack a generated ~500 MB mixed tree with airflow-kaniko's packer and with `tar -czf`, same run.

    .venv/bin/python benchmarks/pack.py [--size-mb 500] [--repeat 3] [--keep DIR] [--single-thread]

The tree: many small source-like text files (with a .dockerignore excluding a few of them), a few
large compressible log files, a few large incompressible (random) files, and symlinks. Every
file is generated from a fixed seed, so two runs pack the same bytes. Both packers run on a warm
page cache (the tree is read once before timing), alternately, `--repeat` times; the best time
of each is reported, and the ratio tar / ours (above 1: ours is faster).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from airflow_kaniko.packing import pack_directory

MB = 1024 * 1024


def _text_pool(rng: random.Random, size: int) -> bytes:
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10)))
        for _ in range(5000)
    ]
    lines = []
    total = 0
    while total < size:
        line = " " * rng.choice((0, 4, 8)) + " ".join(rng.choices(words, k=rng.randint(3, 12))) + "\n"
        lines.append(line)
        total += len(line)
    return "".join(lines).encode()[:size]


def generate(root: Path, size_mb: int, seed: int = 1) -> dict[str, int]:
    """Write the mixed tree into ``root``; return counts by kind."""
    rng = random.Random(seed)
    pool = _text_pool(rng, 8 * MB)
    budget = size_mb * MB
    small_total = budget * 20 // 100  # 20% small text files
    logs_total = budget * 45 // 100  # 45% large compressible
    random_total = budget - small_total - logs_total  # 35% incompressible
    counts = {"small": 0, "logs": 0, "random": 0, "symlinks": 0}

    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /app\n")
    (root / ".dockerignore").write_text("# generated\n**/*.tmp\nbuild/cache\n!build/cache/keep.txt\n")
    written = 0
    i = 0
    while written < small_total:
        d = root / "src" / f"pkg{i % 40:02d}" / f"mod{(i // 40) % 25:02d}"
        d.mkdir(parents=True, exist_ok=True)
        n = rng.randint(200, 16000)
        off = rng.randrange(0, len(pool) - n)
        suffix = ".tmp" if i % 50 == 0 else ".py"
        (d / f"file{i:05d}{suffix}").write_bytes(pool[off : off + n])
        written += n
        i += 1
        counts["small"] += 1
    (root / "build" / "cache").mkdir(parents=True)
    (root / "build" / "cache" / "keep.txt").write_text("kept\n")
    (root / "build" / "cache" / "drop.txt").write_text("dropped\n")

    logs = root / "logs"
    logs.mkdir()
    per_log = logs_total // 4
    for k in range(4):
        with open(logs / f"service{k}.log", "wb") as f:
            left = per_log
            while left > 0:
                n = min(left, 1 * MB)
                off = rng.randrange(0, len(pool) - n)
                f.write(pool[off : off + n])
                left -= n
        counts["logs"] += 1

    blobs = root / "data"
    blobs.mkdir()
    sizes = [random_total // 2, random_total // 4, random_total - random_total // 2 - random_total // 4]
    for k, size in enumerate(sizes):
        with open(blobs / f"blob{k}.bin", "wb") as f:
            left = size
            while left > 0:
                n = min(left, 4 * MB)
                f.write(rng.randbytes(n))
                left -= n
        counts["random"] += 1

    links = root / "links"
    links.mkdir()
    for k in range(500):
        os.symlink(f"../src/pkg{k % 40:02d}", links / f"l{k:03d}")
        counts["symlinks"] += 1
    return counts


def _warm(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                with open(p, "rb") as f:
                    while chunk := f.read(4 * MB):
                        total += len(chunk)
    return total


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="generate the tree here and keep it")
    parser.add_argument("--single-thread", action="store_true", help="also time our packer on one thread")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kaniko-pack-bench-"))
    tree = args.keep or work / "tree"
    try:
        if not (tree / "Dockerfile").exists():
            tree.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            counts = generate(tree, args.size_mb)
            print(f"generated {tree} in {time.perf_counter() - t0:.1f}s: {counts}")
        total = _warm(tree)
        print(f"tree: {total / MB:.0f} MiB of file content, cpus usable: {len(os.sched_getaffinity(0))}")
        tar_version = subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout.split("\n")[
            0
        ]
        gzip_version = subprocess.run(["gzip", "--version"], capture_output=True, text=True).stdout.split(
            "\n"
        )[0]
        print(f"reference: {tar_version}, {gzip_version}, `tar -C TREE -czf OUT .` (gzip -6)")

        ours_out, tar_out = work / "ours.tar.gz", work / "tar.tar.gz"
        ours_times: list[float] = []
        tar_times: list[float] = []
        single_times: list[float] = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run(["tar", "-C", str(tree), "-czf", str(tar_out), "."], check=True)
            tar_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            result = pack_directory(tree, ours_out)
            ours_times.append(time.perf_counter() - t0)
            if args.single_thread:
                t0 = time.perf_counter()
                single = pack_directory(tree, ours_out, workers=1)
                single_times.append(time.perf_counter() - t0)
                assert single.sha256 == result.sha256, "thread count changed the bytes"
        best_tar, best_ours = min(tar_times), min(ours_times)
        print(
            f"tar -czf : best {best_tar:6.2f}s  ({', '.join(f'{t:.2f}' for t in tar_times)})  "
            f"{tar_out.stat().st_size / MB:7.1f} MiB"
        )
        print(
            f"ours     : best {best_ours:6.2f}s  ({', '.join(f'{t:.2f}' for t in ours_times)})  "
            f"{result.size / MB:7.1f} MiB  sha256 {result.sha256[:16]}...  {result.entries} entries"
        )
        if single_times:
            best_single = min(single_times)
            print(
                f"ours, 1 thread: best {best_single:6.2f}s  ({', '.join(f'{t:.2f}' for t in single_times)})  "
                f"same bytes; ratio tar/ours-1-thread {best_tar / best_single:.2f}x"
            )
        print(
            f"ratio tar/ours: {best_tar / best_ours:.2f}x ({'faster' if best_ours < best_tar else 'slower'})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
