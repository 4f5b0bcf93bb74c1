"""`airflow-kaniko render` as a user runs it: a real subprocess, stdout YAML, stderr one line."""

from __future__ import annotations

import subprocess
import sys

import yaml


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airflow_kaniko.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_render_prints_an_applyable_job() -> None:
    done = cli(
        "render",
        "--destination",
        "reg.example.com/team/app:1",
        "--destination",
        "reg.example.com/team/app:latest",
        "--context",
        "git://git.example.com/team/app.git#refs/heads/main",
        "--build-arg",
        "VERSION=1",
        "--label",
        "team=data",
        "--namespace",
        "builds",
        "--secret",
        "regcred",
        "--target",
        "runtime",
    )
    assert done.returncode == 0, done.stderr
    job = yaml.safe_load(done.stdout)
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == "builds"
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--build-arg=VERSION=1" in args and "--label=team=data" in args and "--target=runtime" in args
    assert job["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "regcred"


def test_invalid_input_exits_2_with_one_line_naming_the_value() -> None:
    for args, named in [
        (["--destination", "reg.io/App:1", "--context", "pvc://c"], "'reg.io/App:1'"),
        (["--destination", "reg.io/app:1", "--context", "ftp://x"], "'ftp://x'"),
        (["--destination", "reg.io/app:1", "--context", "pvc://c", "--build-arg", "NOEQUALS"], "'NOEQUALS'"),
        (["--destination", "reg.io/app:1", "--context", "pvc://c", "--namespace", "Bad_NS"], "'Bad_NS'"),
        (
            ["--destination", "reg.io/app:1", "--context", "pvc://c", "--secret", "no_underscores"],
            "'no_underscores'",
        ),
        (["--destination", "reg.io/app:1", "--context", "local:///srv/app"], "local"),
    ]:
        done = cli("render", *args)
        assert done.returncode == 2, (args, done.stdout)
        assert done.stdout == ""
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and named in lines[0] and "Traceback" not in done.stderr


def test_missing_required_flag_is_one_line_too() -> None:
    done = cli("render", "--context", "pvc://c")
    assert (
        done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "--destination" in done.stderr
    )
