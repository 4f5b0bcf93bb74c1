"""`airflow-kaniko pack DIR -o FILE`: output, exit codes, and one-line errors."""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_kaniko.commands import pack


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="airflow-kaniko")
    pack.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["pack", *argv])
    return pack.run(args)


def test_prints_the_sha256_of_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    out = tmp_path / "ctx.tar.gz"
    assert run_cli(str(tmp_path / "ctx"), "-o", str(out)) == 0
    captured = capsys.readouterr()
    assert captured.out == hashlib.sha256(out.read_bytes()).hexdigest() + "\n"
    assert captured.err == ""


def test_custom_dockerfile_and_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "ctx" / "build").mkdir(parents=True)
    (tmp_path / "ctx" / "build" / "app.Dockerfile").write_text("FROM scratch\n")
    out = tmp_path / "ctx.tar.gz"
    assert run_cli(str(tmp_path / "ctx"), "-o", str(out), "-f", "build/app.Dockerfile", "--level", "1") == 0
    assert capsys.readouterr().out.strip() == hashlib.sha256(out.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("setup", "argv", "named"),
    [
        ("none", ["{tmp}/missing", "-o", "{tmp}/o.tar.gz"], "{tmp}/missing"),
        ("empty", ["{tmp}/ctx", "-o", "{tmp}/o.tar.gz"], "'Dockerfile'"),
        ("full", ["{tmp}/ctx", "-o", "{tmp}/o.tar.gz", "-f", "../Dockerfile"], "'../Dockerfile'"),
        ("full", ["{tmp}/ctx", "-o", "{tmp}/nodir/o.tar.gz"], "{tmp}/nodir/o.tar.gz"),
        ("full", ["{tmp}/ctx", "-o", "{tmp}/o.tar.gz", "--level", "11"], "level 11"),
        ("bad-ignore", ["{tmp}/ctx", "-o", "{tmp}/o.tar.gz"], "[oops"),
    ],
)
def test_invalid_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str, argv: list[str], named: str
) -> None:
    ctx = tmp_path / "ctx"
    if setup != "none":
        ctx.mkdir()
    if setup in ("full", "bad-ignore"):
        (ctx / "Dockerfile").write_text("FROM scratch\n")
    if setup == "bad-ignore":
        (ctx / ".dockerignore").write_text("[oops\n")
    code = run_cli(*(a.format(tmp=tmp_path) for a in argv))
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert named.format(tmp=tmp_path) in captured.err
    assert not (tmp_path / "o.tar.gz").exists()


def test_the_installed_command_end_to_end(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    out = tmp_path / "ctx.tar.gz"
    cli = [sys.executable, "-m", "airflow_kaniko.cli", "pack"]
    ok = subprocess.run([*cli, str(ctx), "-o", str(out)], capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout, ok.stderr) == (
        0,
        hashlib.sha256(out.read_bytes()).hexdigest() + "\n",
        "",
    )

    bad = subprocess.run(
        [*cli, str(tmp_path / "nope"), "-o", str(out)], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and str(tmp_path / "nope") in bad.stderr
