"""Pack a build context directory into a deterministic ``tar.gz`` that kaniko can read.

What goes in, and how (docs/context.md says why):

- ``DIR/.dockerignore`` is applied with Docker's semantics (Go's ``filepath.Match`` plus ``**``,
  ``!`` exceptions where the last matching line wins, a leading ``/`` ignored, ``#`` comments).
  As with BuildKit and kaniko, ``DIR/<dockerfile>.dockerignore`` takes the place of
  ``DIR/.dockerignore`` when it exists. The matcher is moby/patternmatcher as ported by the
  ``e2b-dockerfile-utils`` package; hand-written matching is what the other Python ports got wrong.
- The Dockerfile and the ignore files are always packed, even when a pattern excludes them:
  Docker sends them to the daemon for the same reason, kaniko reads both from the context.
- The same content gives the same bytes: entries are sorted by name, mtime is 0, uid/gid are 0,
  user and group names are empty, hard links are packed as regular files, and the gzip header
  carries no timestamp, file name or OS. Permission bits are kept: they end up in the image.
- Symlinks are packed as symlinks, never followed. Sockets are skipped, like GNU tar does.

Speed: reading and tar framing run on the calling thread while deflate runs on a thread pool,
one fixed-size chunk at a time, each chunk primed with the previous 32 KiB (what pigz does). The
chunks are concatenated into one ordinary gzip member; the bytes depend on the chunk size and the
level, never on the number of threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tarfile
import zlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Protocol

from e2b_dockerfile_utils import PatternMatcher

from airflow_kaniko.errors import InvalidInputError

__all__ = [
    "DEFAULT_COMPRESSLEVEL",
    "PackResult",
    "pack_directory",
    "pack_to_bytes",
    "read_ignore_patterns",
]

DEFAULT_COMPRESSLEVEL = 6  # gzip's default: the same size as `tar -czf`, faster through parallelism
_CHUNK = 1 << 20  # part of the output format: changing it changes the bytes (not the content)
_WINDOW = 32 * 1024  # deflate's window: each chunk is primed with this much of the one before
_RECORD = 20 * tarfile.BLOCKSIZE  # GNU tar and Python's tarfile pad the archive to 10 KiB records
_UTF8_BOM = "\ufeff"


@dataclass(frozen=True)
class PackResult:
    """What was packed: the archive's digest and size, and what went into it."""

    sha256: str  # hex digest of the .tar.gz bytes
    size: int  # bytes of the .tar.gz
    entries: int  # tar entries: files, directories, symlinks
    content_bytes: int  # bytes of regular-file content, before compression
    dockerfile: str  # the Dockerfile's path inside the context
    ignore_file: str | None  # the ignore file that applied, None when there was none


class _Writable(Protocol):
    def write(self, data: bytes, /) -> object: ...


# --------------------------------------------------------------------------- .dockerignore


def read_ignore_patterns(text: str) -> list[str]:
    """The patterns of a ``.dockerignore`` file's text, as Docker reads them.

    A UTF-8 BOM is dropped, a line whose first column is ``#`` is a comment, surrounding
    whitespace is trimmed and blank lines are skipped. Cleaning (``/foo`` means ``foo``) is the
    matcher's job.
    """
    if text.startswith(_UTF8_BOM):
        text = text[1:]
    return [line.strip() for line in text.splitlines() if not line.startswith("#") and line.strip()]


def _load_matcher(directory: str, ignore_rel: str) -> PatternMatcher | None:
    path = os.path.join(directory, ignore_rel)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="surrogateescape")
    except OSError as e:
        raise InvalidInputError(f"cannot read ignore file {path!r}: {e.strerror or e}") from e
    patterns = read_ignore_patterns(text)
    if not patterns:
        return None
    try:
        return PatternMatcher(patterns)
    except ValueError as e:
        raise InvalidInputError(
            f"ignore file {path!r} has a pattern Docker would refuse: {e}; patterns follow Go's "
            "filepath.Match plus '**' (classes are [abc], [a-z], [^abc])"
        ) from e


def _clean_dockerfile(directory: str, dockerfile: str) -> str:
    parts = [p for p in dockerfile.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if not parts or ".." in parts or os.path.isabs(dockerfile):
        raise InvalidInputError(
            f"dockerfile {dockerfile!r} must be a relative path inside the context directory "
            f"{directory!r}, without '..' (e.g. 'Dockerfile' or 'docker/app.Dockerfile')"
        )
    rel = "/".join(parts)
    if not os.path.isfile(os.path.join(directory, rel)):
        raise InvalidInputError(f"dockerfile {rel!r} does not exist in the context directory {directory!r}")
    return rel


def _check_directory(directory: str | os.PathLike[str]) -> str:
    path = os.path.abspath(os.fspath(directory))
    if not os.path.exists(path):
        raise InvalidInputError(f"context directory {os.fspath(directory)!r} does not exist")
    if not os.path.isdir(path):
        raise InvalidInputError(f"context directory {os.fspath(directory)!r} is not a directory")
    return path


# --------------------------------------------------------------------------- parallel gzip


def _deflate(data: bytes | bytearray | memoryview, zdict: bytes, level: int, last: bool) -> bytes:
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_DEFAULT_STRATEGY, zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    # A sync flush ends the chunk on a byte boundary without ending the stream, so the raw
    # deflate outputs concatenate into one stream; only the last chunk sets the final bit.
    return c.compress(data) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


class _GzipWriter:
    """Gzip the bytes written to it, chunk by chunk on a thread pool, in order, into ``sink``."""

    # gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS "unknown" (RFC 1952)
    _HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

    def __init__(self, sink: Callable[[bytes], None], *, level: int, workers: int) -> None:
        self._sink = sink
        self._level = level
        self._pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
        self._pending: deque[Future[bytes]] = deque()
        self._max_pending = 2 * workers
        self._buf = bytearray(_CHUNK)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._zdict = b""
        self._crc = 0
        self._length = 0
        self._sink(self._HEADER)

    def write(self, data: bytes) -> None:
        offset, n = 0, len(data)
        while offset < n:
            take = min(n - offset, _CHUNK - self._pos)
            self._view[self._pos : self._pos + take] = data[offset : offset + take]
            self._pos += take
            offset += take
            if self._pos == _CHUNK:
                self._flush_chunk(last=False)

    def copy_from_fd(self, fd: int, size: int) -> int:
        """Copy up to ``size`` bytes from ``fd`` straight into the chunk buffer; return bytes copied."""
        copied = 0
        while copied < size:
            want = min(size - copied, _CHUNK - self._pos)
            got = os.readv(fd, [self._view[self._pos : self._pos + want]])
            if got == 0:
                break
            self._pos += got
            copied += got
            if self._pos == _CHUNK:
                self._flush_chunk(last=False)
        return copied

    def _flush_chunk(self, *, last: bool) -> None:
        data = self._view[: self._pos] if last else self._buf
        self._crc = zlib.crc32(data, self._crc)
        self._length += self._pos
        zdict = self._zdict
        if self._pos >= _WINDOW:
            self._zdict = bytes(self._view[self._pos - _WINDOW : self._pos])
        else:
            self._zdict = (self._zdict + bytes(self._view[: self._pos]))[-_WINDOW:]
        if self._pool is None:
            self._sink(_deflate(data, zdict, self._level, last))
        else:
            self._pending.append(self._pool.submit(_deflate, data, zdict, self._level, last))
            while len(self._pending) > (0 if last else self._max_pending):
                self._sink(self._pending.popleft().result())
        if not last:
            # The submitted buffer belongs to the worker now; a fresh one takes its place.
            self._buf = bytearray(_CHUNK)
            self._view = memoryview(self._buf)
            self._pos = 0

    def close(self) -> None:
        self._flush_chunk(last=True)
        self._sink(zlib.crc32(b"", self._crc).to_bytes(4, "little"))
        self._sink((self._length & 0xFFFFFFFF).to_bytes(4, "little"))
        self.abort()

    def abort(self) -> None:
        if self._pool is not None:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None


# --------------------------------------------------------------------------- walk and tar


@dataclass
class _Plan:
    directory: str
    dockerfile: str
    ignore_file: str | None
    matcher: PatternMatcher | None
    always: frozenset[str]  # packed whatever the patterns say
    always_dirs: frozenset[str]  # their parent directories, walked whatever the patterns say
    skip_inodes: frozenset[tuple[int, int]]  # the archive being written, when it lies inside


def _plan(
    directory: str | os.PathLike[str], dockerfile: str, skip_inodes: frozenset[tuple[int, int]]
) -> _Plan:
    root = _check_directory(directory)
    df = _clean_dockerfile(root, dockerfile)
    # BuildKit and kaniko: <Dockerfile>.dockerignore beside the Dockerfile wins over .dockerignore.
    ignore_file = None
    for candidate in (df + ".dockerignore", ".dockerignore"):
        if os.path.isfile(os.path.join(root, candidate)):
            ignore_file = candidate
            break
    matcher = _load_matcher(root, ignore_file) if ignore_file else None
    always = frozenset({df, ".dockerignore", df + ".dockerignore"})
    dirs: set[str] = set()
    for rel in always:
        parts = rel.split("/")[:-1]
        dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return _Plan(root, df, ignore_file, matcher, always, frozenset(dirs), skip_inodes)


class _Packer:
    def __init__(self, plan: _Plan, gz: _GzipWriter) -> None:
        self._plan = plan
        self._gz = gz
        self.entries = 0
        self.content_bytes = 0
        self._written = 0  # uncompressed tar bytes

    def run(self) -> None:
        self._walk(self._plan.directory, "", [])
        end = 2 * tarfile.BLOCKSIZE
        end += -(self._written + end) % _RECORD
        self._gz.write(bytes(end))

    def _excluded(self, rel: str) -> bool:
        matcher = self._plan.matcher
        return matcher is not None and rel not in self._plan.always and matcher.matches(rel)

    def _scandir(self, path: str) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(path) as it:
                return sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise InvalidInputError(f"cannot read directory {path!r}: {e.strerror or e}") from e

    def _walk(self, path: str, rel_dir: str, pending: list[tuple[str, os.stat_result]]) -> None:
        """Pack the directory ``path`` (``rel_dir`` in the archive), depth first, sorted by name.

        ``pending`` holds excluded parent directories that are only walked because a ``!``
        exception may re-include something below them; their entries are written just before the
        first entry that is, so a re-included file keeps the modes of its parents.
        """
        for entry in self._scandir(path):
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise InvalidInputError(f"cannot read {entry.path!r}: {e.strerror or e}") from e
            if (st.st_dev, st.st_ino) in self._plan.skip_inodes:
                continue
            excluded = self._excluded(rel)
            if stat.S_ISDIR(st.st_mode):
                if not excluded:
                    self._flush_pending(pending)
                    self._add(rel, entry.path, st)
                    self._walk(entry.path, rel, pending)
                elif rel in self._plan.always_dirs or self._may_reinclude(rel):
                    pending.append((rel, st))
                    self._walk(entry.path, rel, pending)
                    if pending and pending[-1][0] == rel:
                        pending.pop()
            elif not excluded:
                self._flush_pending(pending)
                self._add(rel, entry.path, st)

    def _may_reinclude(self, rel: str) -> bool:
        matcher = self._plan.matcher
        return matcher is not None and matcher.may_match_under(rel)

    def _flush_pending(self, pending: list[tuple[str, os.stat_result]]) -> None:
        for rel, st in pending:
            self._header(self._info(rel, st, tarfile.DIRTYPE))
        pending.clear()

    def _info(self, rel: str, st: os.stat_result, kind: bytes) -> tarfile.TarInfo:
        info = tarfile.TarInfo(rel)
        info.type = kind
        info.mode = stat.S_IMODE(st.st_mode)
        # uid/gid 0, empty names and mtime 0 are TarInfo's defaults: nothing of the host leaks in.
        return info

    def _header(self, info: tarfile.TarInfo) -> None:
        buf = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        self._gz.write(buf)
        self._written += len(buf)
        self.entries += 1

    def _add(self, rel: str, path: str, st: os.stat_result) -> None:
        mode = st.st_mode
        if stat.S_ISREG(mode):
            self._add_file(rel, path, st)
        elif stat.S_ISDIR(mode):
            self._header(self._info(rel, st, tarfile.DIRTYPE))
        elif stat.S_ISLNK(mode):
            info = self._info(rel, st, tarfile.SYMTYPE)
            try:
                info.linkname = os.readlink(path)
            except OSError as e:
                raise InvalidInputError(f"cannot read symlink {path!r}: {e.strerror or e}") from e
            self._header(info)
        elif stat.S_ISFIFO(mode):
            self._header(self._info(rel, st, tarfile.FIFOTYPE))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info = self._info(rel, st, tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE)
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._header(info)
        # sockets: skipped, as GNU tar and Docker do; they cannot be recreated from an archive.

    def _add_file(self, rel: str, path: str, st: os.stat_result) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0))
        except OSError as e:
            raise InvalidInputError(f"cannot read file {path!r}: {e.strerror or e}") from e
        try:
            info = self._info(rel, st, tarfile.REGTYPE)
            info.size = st.st_size
            self._header(info)
            try:
                copied = self._gz.copy_from_fd(fd, st.st_size)
            except OSError as e:
                raise InvalidInputError(f"cannot read file {path!r}: {e.strerror or e}") from e
            if copied != st.st_size:
                raise InvalidInputError(
                    f"file {path!r} shrank from {st.st_size} to {copied} bytes while it was packed"
                )
        finally:
            os.close(fd)
        pad = -st.st_size % tarfile.BLOCKSIZE
        if pad:
            self._gz.write(bytes(pad))
        self._written += st.st_size + pad
        self.content_bytes += st.st_size


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _pack(
    directory: str | os.PathLike[str],
    write: Callable[[bytes], object],
    *,
    dockerfile: str,
    level: int,
    workers: int | None,
    skip_inodes: frozenset[tuple[int, int]] = frozenset(),
    max_size: int | None = None,
    describe_output: str = "",
) -> PackResult:
    if not 0 <= level <= 9:
        raise InvalidInputError(f"compression level {level!r} is not allowed; use 0 (none) to 9 (smallest)")
    plan = _plan(directory, dockerfile, skip_inodes)
    digest = hashlib.sha256()
    size = 0

    def sink(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if max_size is not None and size > max_size:
            raise InvalidInputError(
                f"context directory {plan.directory!r} packs to more than {max_size} bytes, the limit "
                f"of {describe_output or 'its destination'}; exclude files with .dockerignore or "
                "upload the context to object storage instead"
            )
        digest.update(data)
        write(data)

    gz = _GzipWriter(sink, level=level, workers=workers or _default_workers())
    packer = _Packer(plan, gz)
    try:
        packer.run()
        gz.close()
    finally:
        gz.abort()
    return PackResult(
        sha256=digest.hexdigest(),
        size=size,
        entries=packer.entries,
        content_bytes=packer.content_bytes,
        dockerfile=plan.dockerfile,
        ignore_file=plan.ignore_file,
    )


def pack_directory(
    directory: str | os.PathLike[str],
    output: str | os.PathLike[str] | IO[bytes],
    *,
    dockerfile: str = "Dockerfile",
    level: int = DEFAULT_COMPRESSLEVEL,
    workers: int | None = None,
) -> PackResult:
    """Pack ``directory`` into ``output`` (a file path, or a binary stream) as a tar.gz.

    A path is written through a temporary file beside it and renamed into place, so a reader
    never sees half an archive; when it lies inside ``directory`` it is not packed into itself.
    ``dockerfile`` is relative to ``directory``. ``workers`` defaults to the usable CPUs.

    Raises InvalidInputError for a missing directory or Dockerfile, an unreadable file or
    directory, an invalid ``.dockerignore`` pattern or an output path that cannot be written.
    """
    if not isinstance(output, (str, os.PathLike)):
        stream: _Writable = output
        return _pack(directory, stream.write, dockerfile=dockerfile, level=level, workers=workers)

    target = os.path.abspath(os.fspath(output))
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        f = open(tmp, "wb", buffering=0)  # noqa: SIM115 - closed below, on every path
    except OSError as e:
        raise InvalidInputError(f"cannot write output {os.fspath(output)!r}: {e.strerror or e}") from e
    try:
        skip = {_inode(f.fileno())}
        if os.path.exists(target):
            skip.add(_inode(target))
        with f:
            result = _pack(
                directory,
                f.write,
                dockerfile=dockerfile,
                level=level,
                workers=workers,
                skip_inodes=frozenset(skip),
            )
        os.replace(tmp, target)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return result


def pack_to_bytes(
    directory: str | os.PathLike[str],
    *,
    dockerfile: str = "Dockerfile",
    level: int = DEFAULT_COMPRESSLEVEL,
    max_size: int | None = None,
    limit_name: str = "",
    workers: int | None = None,
) -> tuple[bytes, PackResult]:
    """Pack ``directory`` in memory, for a ConfigMap; stop as soon as it exceeds ``max_size`` bytes.

    ``limit_name`` says whose limit ``max_size`` is (e.g. "a ConfigMap (1 MiB)"); the error
    raised when the archive does not fit names it.
    """
    chunks: list[bytes] = []
    result = _pack(
        directory,
        chunks.append,
        dockerfile=dockerfile,
        level=level,
        workers=workers,
        max_size=max_size,
        describe_output=limit_name,
    )
    return b"".join(chunks), result


def _inode(target: str | int) -> tuple[int, int]:
    st = os.stat(target)
    return (st.st_dev, st.st_ino)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
