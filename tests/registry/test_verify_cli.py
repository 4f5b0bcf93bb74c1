"""``airflow-kaniko verify`` against a real registry: exit status, stdout, one line on stderr."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_kaniko.cli import main
from tests.support.registry import OciImage, RunningRegistry

Push = Callable[..., OciImage]


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_the_digest_and_exits_0(
    anonymous_registry: RunningRegistry, pushed_image: Push, capsys: pytest.CaptureFixture[str]
) -> None:
    image = pushed_image(anonymous_registry, "cli/app:v1")
    ref = f"{anonymous_registry.host}/cli/app:v1"
    assert _run(capsys, ref, "--insecure") == (0, f"{image.digest}\n", "")
    assert _run(capsys, ref, "--insecure", "--digest", image.digest) == (0, f"{image.digest}\n", "")
    assert _run(capsys, f"{anonymous_registry.host}/cli/app@{image.digest}", "--insecure")[0] == 0


def test_digest_mismatch_exits_1_naming_both_digests(
    anonymous_registry: RunningRegistry, pushed_image: Push, capsys: pytest.CaptureFixture[str]
) -> None:
    image = pushed_image(anonymous_registry, "cli/other:v1")
    wanted = "sha256:" + "0" * 64
    code, out, err = _run(capsys, f"{anonymous_registry.host}/cli/other:v1", "--insecure", "--digest", wanted)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and wanted in err and image.digest in err


def test_not_found_exits_1_naming_the_reference(
    anonymous_registry: RunningRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = f"{anonymous_registry.host}/cli/absent:v1"
    code, _, err = _run(capsys, ref, "--insecure")
    assert code == 1 and ref in err and err.count("\n") == 1


def test_credentials_from_docker_config_and_ca_file(
    basic_registry: RunningRegistry, pushed_image: Push, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = pushed_image(basic_registry, "cli/private:v1")
    config = basic_registry.write_docker_config(tmp_path / "config.json")
    ref = f"{basic_registry.host}/cli/private:v1"
    assert basic_registry.ca_cert is not None
    code, out, _ = _run(capsys, ref, "--docker-config", str(config), "--ca-file", str(basic_registry.ca_cert))
    assert (code, out) == (0, f"{image.digest}\n")
    code, out, _ = _run(capsys, ref, "--docker-config", str(config), "--insecure")  # unverified TLS
    assert (code, out) == (0, f"{image.digest}\n")


def test_refused_credentials_exit_3_without_the_password(
    basic_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = basic_registry.write_docker_config(tmp_path / "config.json", password="wrong-password-xyz")
    code, _, err = _run(
        capsys, f"{basic_registry.host}/cli/private:v1", "--docker-config", str(config), "--insecure"
    )
    assert code == 3 and basic_registry.host in err and "wrong-password-xyz" not in err
    assert err.count("\n") == 1


def test_untrusted_certificate_exits_3_with_a_tls_message(
    basic_registry: RunningRegistry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = basic_registry.write_docker_config(tmp_path / "config.json")
    code, _, err = _run(capsys, f"{basic_registry.host}/cli/private:v1", "--docker-config", str(config))
    assert code == 3 and "TLS" in err and "insecure" in err


def test_expected_platforms_and_labels(
    anonymous_registry: RunningRegistry, pushed_image: Push, capsys: pytest.CaptureFixture[str]
) -> None:
    image = pushed_image(anonymous_registry, "cli/multi:v1", index=True)
    ref = f"{anonymous_registry.host}/cli/multi:v1"
    ok = _run(
        capsys,
        ref,
        "--insecure",
        "--platform",
        "linux/amd64",
        "--platform",
        "linux/arm64",
        "--label",
        "team=data",
    )
    assert ok == (0, f"{image.digest}\n", "")
    code, _, err = _run(capsys, ref, "--insecure", "--platform", "linux/amd64")
    assert code == 1 and "linux/arm64" in err


def test_invalid_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "Not A Reference")
    assert code == 2 and "'Not A Reference'" in err
    code, _, err = _run(capsys, "reg.io/app:1", "--digest", "md5:1234")
    assert code == 2 and "md5:1234" in err


def test_the_installed_command_prints_no_traceback(anonymous_registry: RunningRegistry) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_kaniko.cli",
            "verify",
            f"{anonymous_registry.host}/cli/none:v1",
            "--insecure",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
