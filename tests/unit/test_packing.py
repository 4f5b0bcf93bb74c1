"""Packing a build context: what lands in the tar.gz, byte for byte, and the errors a user sees."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import tarfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from airflow_kaniko.errors import InvalidInputError
from airflow_kaniko.packing import pack_directory, pack_to_bytes, read_ignore_patterns


def make_tree(root: Path, files: Mapping[str, str | bytes], dockerfile: str = "Dockerfile") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if dockerfile not in files:
        files = {dockerfile: "FROM scratch\n", **files}
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
        else:
            path.write_bytes(content)
    return root


def members(data: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def names(root: Path, **kwargs: object) -> set[str]:
    data, _ = pack_to_bytes(root, **kwargs)  # type: ignore[arg-type]
    return set(members(data))


def packed_files(root: Path, ignore: str, files: list[str]) -> set[str]:
    """The regular files packed from a tree of ``files`` with ``.dockerignore`` = ``ignore``."""
    make_tree(root, {f: f"content of {f}\n" for f in files} | {".dockerignore": ignore})
    data, _ = pack_to_bytes(root)
    return {n for n, m in members(data).items() if m.isfile()} - {"Dockerfile", ".dockerignore"}


# --------------------------------------------------------------------------- determinism


def test_same_content_gives_same_bytes_whatever_mtimes_owners_and_location(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {
        "app/main.py": "print('hi')\n",
        "app/data.bin": os.urandom(3000),
        "README.md": "# x\n",
    }
    a = make_tree(tmp_path / "a", files)
    b = make_tree(tmp_path / "elsewhere" / "b", files)
    for path in b.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
        if os.geteuid() == 0:
            os.chown(path, 4321, 8765, follow_symlinks=False)
    first, r1 = pack_to_bytes(a)
    second, r2 = pack_to_bytes(b)
    assert first == second
    assert r1.sha256 == r2.sha256 == hashlib.sha256(first).hexdigest()
    assert r1.size == len(first)


def test_different_content_gives_a_different_digest(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"a.txt": "one\n"})
    _, before = pack_to_bytes(root)
    (root / "a.txt").write_text("two\n")
    _, after = pack_to_bytes(root)
    assert before.sha256 != after.sha256


def test_entries_are_sorted_and_carry_nothing_of_the_host(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"b.txt": "b", "a/z.txt": "z", "a/b.txt": "b", "c/d/e.txt": "e"})
    data, _ = pack_to_bytes(root)
    ms = list(members(data).values())
    assert [m.name for m in ms] == ["Dockerfile", "a", "a/b.txt", "a/z.txt", "b.txt", "c", "c/d", "c/d/e.txt"]
    for m in ms:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")


def test_gzip_header_has_no_timestamp_or_file_name(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {})
    out = tmp_path / "ctx.tar.gz"
    pack_directory(root, out)
    header = out.read_bytes()[:10]
    assert header[:3] == b"\x1f\x8b\x08"
    assert header[3] == 0  # FLG: no FNAME, no FCOMMENT, no FEXTRA
    assert header[4:8] == b"\x00\x00\x00\x00"  # MTIME


def test_large_files_cross_chunks_and_threads_do_not_change_the_bytes(tmp_path: Path) -> None:
    text = b"".join(b"line %d of a log that compresses well\n" % i for i in range(120_000))
    files = {"logs/app.log": text, "blob.bin": os.urandom(2_500_000), "empty": b""}
    root = make_tree(tmp_path / "ctx", files)
    one, _ = pack_to_bytes(root, workers=1)
    two, _ = pack_to_bytes(root, workers=2)
    four, _ = pack_to_bytes(root, workers=4)
    assert one == two == four
    # gzip checks the CRC and length of the whole member while it decompresses.
    raw = gzip.decompress(one)
    assert len(raw) % 10240 == 0
    with tarfile.open(fileobj=io.BytesIO(one), mode="r:gz") as tar:
        for rel, content in files.items():
            f = tar.extractfile(rel)
            assert f is not None and f.read() == content


def test_compression_level_zero_still_gives_a_valid_archive(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"a.txt": "a" * 100_000})
    data, result = pack_to_bytes(root, level=0)
    assert result.size > 100_000
    assert "a.txt" in members(data)


def test_modes_are_kept(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"run.sh": "#!/bin/sh\n", "conf": "x"})
    (root / "run.sh").chmod(0o755)
    (root / "conf").chmod(0o600)
    ms = members(pack_to_bytes(root)[0])
    assert ms["run.sh"].mode == 0o755
    assert ms["conf"].mode == 0o600


def test_unicode_and_long_names_round_trip(tmp_path: Path) -> None:
    long = "/".join(["d" * 60] * 3) + "/" + "f" * 120
    root = make_tree(tmp_path / "ctx", {"données/été.txt": "ok", long: "deep"})
    data, _ = pack_to_bytes(root)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.extractfile("données/été.txt").read() == b"ok"  # type: ignore[union-attr]
        assert tar.extractfile(long).read() == b"deep"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- symlinks


def test_symlinks_stay_symlinks(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"real/file.txt": "x"})
    (root / "to-file").symlink_to("real/file.txt")
    (root / "to-dir").symlink_to("real")
    (root / "dangling").symlink_to("does/not/exist")
    (root / "outside").symlink_to("/etc/passwd")
    ms = members(pack_to_bytes(root)[0])
    assert ms["to-file"].issym() and ms["to-file"].linkname == "real/file.txt"
    assert ms["to-dir"].issym() and ms["to-dir"].linkname == "real"
    assert ms["dangling"].issym() and ms["dangling"].linkname == "does/not/exist"
    assert ms["outside"].issym() and ms["outside"].linkname == "/etc/passwd"
    assert "to-dir/file.txt" not in ms  # a symlinked directory is not followed


def test_hard_links_are_packed_as_regular_files(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"a.txt": "same"})
    os.link(root / "a.txt", root / "b.txt")
    data, _ = pack_to_bytes(root)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.getmember("b.txt").isfile()
        assert tar.extractfile("b.txt").read() == b"same"  # type: ignore[union-attr]


# --------------------------------------------------------------------------- .dockerignore
# The examples are those of Docker's .dockerignore documentation (build context reference).


def test_docs_example_comment_and_single_star_patterns(tmp_path: Path) -> None:
    ignore = "# comment\n*/temp*\n*/*/temp*\ntemp?\n"
    files = [
        "somedir/temporary.txt",  # */temp*
        "somedir/temp/inner.txt",  # */temp* matches the directory somedir/temp
        "somedir/subdir/temporary.txt",  # */*/temp*
        "tempa",  # temp?
        "tempb",  # temp?
        "temporary.txt",  # nothing matches at the root except temp?
        "temp",  # temp? needs one more character
        "a/b/c/temporary.txt",  # three levels down: no pattern reaches it
        "# comment",  # the comment line is not a pattern
    ]
    assert packed_files(tmp_path / "ctx", ignore, files) == {
        "temporary.txt",
        "temp",
        "a/b/c/temporary.txt",
        "# comment",
    }


def test_docs_example_double_star_matches_any_number_of_directories(tmp_path: Path) -> None:
    files = ["main.go", "pkg/a.go", "pkg/deep/er/b.go", "pkg/c.txt"]
    assert packed_files(tmp_path / "ctx", "**/*.go\n", files) == {"pkg/c.txt"}


def test_docs_example_exception(tmp_path: Path) -> None:
    files = ["README.md", "CHANGES.md", "docs/guide.md"]
    # Unlike .gitignore, *.md matches at the root only: docs/guide.md stays.
    assert packed_files(tmp_path / "ctx", "*.md\n!README.md\n", files) == {"README.md", "docs/guide.md"}


def test_docs_example_last_matching_line_wins(tmp_path: Path) -> None:
    files = ["README.md", "README-secret.md", "README-public.md", "other.md"]
    assert packed_files(tmp_path / "a", "*.md\n!README*.md\nREADME-secret.md\n", files) == {
        "README.md",
        "README-public.md",
    }
    assert packed_files(tmp_path / "b", "*.md\nREADME-secret.md\n!README*.md\n", files) == {
        "README.md",
        "README-secret.md",
        "README-public.md",
    }


def test_docs_example_dockerfile_and_dockerignore_are_always_sent(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {".dockerignore": "Dockerfile\n.dockerignore\n*\n", "app.py": "x"})
    assert names(root) == {"Dockerfile", ".dockerignore"}


def test_docs_example_star_then_exceptions_lists_what_to_include(tmp_path: Path) -> None:
    files = ["src/app.py", "src/lib/util.py", "requirements.txt", "secrets/key", "node_modules/x/y.js"]
    got = packed_files(tmp_path / "ctx", "*\n!src\n!requirements.txt\n", files)
    assert got == {"src/app.py", "src/lib/util.py", "requirements.txt"}


def test_docs_example_leading_slash_and_root_relative_paths(tmp_path: Path) -> None:
    files = ["foo/bar", "foo/baz", "x/foo/bar", "bar"]
    assert packed_files(tmp_path / "a", "/foo/bar\n", files) == {"foo/baz", "x/foo/bar", "bar"}
    assert packed_files(tmp_path / "b", "foo/bar\n", files) == {"foo/baz", "x/foo/bar", "bar"}


def test_excluded_directory_with_an_exception_inside_keeps_the_parents(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "ctx",
        {".dockerignore": "build\n!build/out/app.bin\n", "build/out/app.bin": "b", "build/tmp/x.o": "o"},
    )
    (root / "build" / "out").chmod(0o750)
    ms = members(pack_to_bytes(root)[0])
    assert {"build", "build/out", "build/out/app.bin"} <= set(ms)
    assert "build/tmp" not in ms and "build/tmp/x.o" not in ms
    assert ms["build/out"].isdir() and ms["build/out"].mode == 0o750


def test_excluded_directory_is_not_entered(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {".dockerignore": "node_modules\n", "node_modules/a/b.js": "x"})
    (root / "node_modules" / "a").chmod(0)  # would be unreadable if it were walked (not as root)
    assert names(root) == {"Dockerfile", ".dockerignore"}


def test_go_character_classes_and_escapes(tmp_path: Path) -> None:
    files = ["log1", "logx", "log[", "a*b", "acb"]
    assert packed_files(tmp_path / "a", "log[0-9]\n", files) == {"logx", "log[", "a*b", "acb"}
    assert packed_files(tmp_path / "b", "log[^0-9]\n", files) == {"log1", "a*b", "acb"}
    assert packed_files(tmp_path / "c", "a\\*b\n", files) == {"log1", "logx", "log[", "acb"}


def test_dockerfile_specific_ignore_file_wins(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "ctx",
        {
            "docker/app.Dockerfile": "FROM scratch\n",
            "docker/app.Dockerfile.dockerignore": "*.log\n",
            ".dockerignore": "*.txt\n",
            "a.log": "l",
            "a.txt": "t",
        },
        dockerfile="docker/app.Dockerfile",
    )
    data, result = pack_to_bytes(root, dockerfile="docker/app.Dockerfile")
    got = set(members(data))
    assert result.ignore_file == "docker/app.Dockerfile.dockerignore"
    assert "a.txt" in got and "a.log" not in got
    assert {"docker/app.Dockerfile", "docker/app.Dockerfile.dockerignore", ".dockerignore"} <= got


def test_excluded_dockerfile_in_a_subdirectory_is_still_packed(tmp_path: Path) -> None:
    root = make_tree(
        tmp_path / "ctx",
        {"ci/Dockerfile": "FROM scratch\n", ".dockerignore": "ci\n", "ci/other": "x"},
        dockerfile="ci/Dockerfile",
    )
    assert names(root, dockerfile="ci/Dockerfile") == {".dockerignore", "ci", "ci/Dockerfile"}


def test_read_ignore_patterns_follows_docker() -> None:
    text = "\ufeff# comment\n  *.log  \n\n #not a comment\n!keep.log\n"
    assert read_ignore_patterns(text) == ["*.log", "#not a comment", "!keep.log"]


def test_an_invalid_pattern_names_the_ignore_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {".dockerignore": "ok\n[unterminated\n"})
    with pytest.raises(InvalidInputError, match=r"\.dockerignore.*\[unterminated"):
        pack_to_bytes(root)


# --------------------------------------------------------------------------- errors and outputs


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"context directory '.*nope' does not exist"):
        pack_to_bytes(tmp_path / "nope")


def test_directory_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(InvalidInputError, match="is not a directory"):
        pack_to_bytes(tmp_path / "f")


def test_missing_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    with pytest.raises(InvalidInputError, match=r"dockerfile 'Dockerfile' does not exist in the context"):
        pack_to_bytes(tmp_path / "ctx")
    with pytest.raises(InvalidInputError, match=r"dockerfile 'build/Dockerfile' does not exist"):
        pack_to_bytes(tmp_path / "ctx", dockerfile="build/Dockerfile")


@pytest.mark.parametrize("bad", ["../Dockerfile", "/etc/Dockerfile", "", "a/../../Dockerfile"])
def test_dockerfile_outside_the_context(tmp_path: Path, bad: str) -> None:
    root = make_tree(tmp_path / "ctx", {})
    with pytest.raises(InvalidInputError, match="must be a relative path inside the context"):
        pack_to_bytes(root, dockerfile=bad)


def test_unreadable_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tree(tmp_path / "ctx", {"secret.key": "k"})
    real_open = os.open

    def deny(path: str, flags: int, *args: int) -> int:
        if str(path).endswith("secret.key"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)

    # Tests run as root, where chmod 000 does not stop a read: deny it at the open call instead.
    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(InvalidInputError, match=r"cannot read file '.*secret\.key': Permission denied"):
        pack_to_bytes(root)


def test_bad_compression_level(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {})
    with pytest.raises(InvalidInputError, match="compression level 12"):
        pack_to_bytes(root, level=12)


def test_size_limit_names_the_limit(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"blob": os.urandom(200_000)})
    with pytest.raises(InvalidInputError, match=r"more than 100000 bytes, the limit of a ConfigMap"):
        pack_to_bytes(root, max_size=100_000, limit_name="a ConfigMap")
    data, result = pack_to_bytes(root, max_size=300_000)
    assert len(data) == result.size


def test_output_inside_the_context_is_not_packed_into_itself(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"a.txt": "a"})
    expected, _ = pack_to_bytes(root)
    out = root / "context.tar.gz"
    first = pack_directory(root, out)
    second = pack_directory(root, out)  # the previous archive is there now
    assert first.sha256 == second.sha256 == hashlib.sha256(expected).hexdigest()
    assert out.read_bytes() == expected
    assert sorted(p.name for p in root.iterdir()) == [
        "Dockerfile",
        "a.txt",
        "context.tar.gz",
    ]  # no temp file left


def test_stream_output(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"a.txt": "a"})
    buf = io.BytesIO()
    result = pack_directory(root, buf)
    assert hashlib.sha256(buf.getvalue()).hexdigest() == result.sha256


def test_a_failed_pack_leaves_no_file_behind(tmp_path: Path) -> None:
    out = tmp_path / "out.tar.gz"
    with pytest.raises(InvalidInputError):
        pack_directory(tmp_path / "missing", out)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_named(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {})
    with pytest.raises(InvalidInputError, match=r"cannot write output '.*no/such/dir/out\.tar\.gz'"):
        pack_directory(root, tmp_path / "no" / "such" / "dir" / "out.tar.gz")


def test_result_describes_the_archive(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {"a.txt": "12345", "d/b.txt": "678"})
    out = tmp_path / "o.tar.gz"
    result = pack_directory(root, out)
    assert result.size == out.stat().st_size
    assert result.entries == 4  # Dockerfile, a.txt, d, d/b.txt
    assert result.content_bytes == len("FROM scratch\n") + 5 + 3
    assert result.dockerfile == "Dockerfile" and result.ignore_file is None


def test_fifos_are_packed_as_fifos_and_sockets_skipped(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "ctx", {})
    os.mkfifo(root / "pipe")  # never opened: packing must not block on it
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(root / "sock"))
        ms = members(pack_to_bytes(root)[0])
    assert ms["pipe"].isfifo()
    assert "sock" not in ms
