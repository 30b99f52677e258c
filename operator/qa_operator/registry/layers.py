"""Deterministic image layers: the same directory always gives the same layer digests.

A layer is a gzipped tar. To make it reproducible we sort entries, fix mtime/uid/gid/owner names,
normalise modes (0755 for directories and executables, 0644 otherwise) and write the gzip header
with mtime 0 and no file name. Then a package that did not change costs zero bytes to push again.

Two packers share that writer: `build_directory_layer` (a model package under a prefix; regular
files and directories only) and `build_tree_layer` (a whole image subtree, with symlinks,
hardlinks and a few directories owned by another uid), and two gzip flavours: one deflate
stream, or independent blocks compressed on every core at once (`Compression.block_size`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import struct
import tarfile
import tempfile
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# Fixed, so that the compressed bytes (and digest) depend only on the content and zlib.
GZIP_LEVEL = 6
# Deflate's window: a block compressed with the previous block's tail as its dictionary matches
# across the boundary as a single stream would.
_WINDOW = 32 * 1024


@dataclass(frozen=True)
class Compression:
    """How a layer is gzipped. Everything but `threads` decides the compressed bytes.

    block_size None: one deflate stream (what `gzip` writes). Otherwise the input is cut into
    blocks of that size, each deflated on its own (primed with the previous block's last 32 KiB,
    as pigz does) by a pool of `threads`: the output depends on level and block size only, never
    on the number of threads, and is one ordinary gzip member.
    """

    level: int = GZIP_LEVEL
    block_size: int | None = None
    threads: int | None = None  # None: one per CPU

    @property
    def identity(self) -> str:
        """What the compressed bytes depend on: level, blocking and the zlib in use."""
        blocking = "stream" if self.block_size is None else f"blocks{self.block_size}"
        return f"gzip-{self.level}-{blocking}-zlib{zlib.ZLIB_RUNTIME_VERSION}"


@dataclass(frozen=True)
class Layer:
    """A built layer: its compressed file on disk plus the two digests an image needs."""

    path: Path  # the .tar.gz file
    digest: str  # sha256 of the compressed bytes: the blob digest in the manifest
    diff_id: str  # sha256 of the uncompressed tar: goes in the config's rootfs.diff_ids
    size: int  # compressed size in bytes

    def open(self) -> IO[bytes]:
        return self.path.open("rb")


class HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.target.write(data)

    def flush(self) -> None:
        self.target.flush()


def _gzip_header(level: int) -> bytes:
    """The header gzip.GzipFile writes with no file name and mtime 0."""
    extra_flags = b"\x02" if level == 9 else b"\x04" if level == 1 else b"\x00"
    return b"\x1f\x8b\x08\x00" + b"\x00\x00\x00\x00" + extra_flags + b"\xff"


def _deflate_block(block: bytes, level: int, dictionary: bytes) -> bytes:
    if dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15, zdict=dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    # A sync flush ends the block byte-aligned and not final, so blocks concatenate.
    return compressor.compress(block) + compressor.flush(zlib.Z_SYNC_FLUSH)


class _BlockGzipWriter:
    """gzip written as independently deflated blocks, compressed by a thread pool (zlib releases
    the GIL), written in order. Memory stays within a few blocks per thread."""

    def __init__(self, target: Any, level: int, block_size: int, threads: int) -> None:
        self._target = target
        self._level = level
        self._block_size = block_size
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gzip-block")
        self._in_flight: deque[Future[bytes]] = deque()
        self._max_in_flight = 2 * threads
        self._pending = bytearray()
        self._dictionary = b""
        self._crc = 0
        self._size = 0
        target.write(_gzip_header(level))

    def write(self, data: bytes) -> int:
        self._crc = zlib.crc32(data, self._crc)
        self._size += len(data)
        self._pending += data
        while len(self._pending) >= self._block_size:
            block = bytes(self._pending[: self._block_size])
            del self._pending[: self._block_size]
            self._submit(block)
        return len(data)

    def _submit(self, block: bytes) -> None:
        self._in_flight.append(
            self._pool.submit(_deflate_block, block, self._level, self._dictionary)
        )
        self._dictionary = block[-_WINDOW:]
        while len(self._in_flight) > self._max_in_flight:
            self._target.write(self._in_flight.popleft().result())

    def abort(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        try:
            if self._pending:
                self._submit(bytes(self._pending))
                self._pending.clear()
            while self._in_flight:
                self._target.write(self._in_flight.popleft().result())
            final = zlib.compressobj(self._level, zlib.DEFLATED, -15).flush()  # empty last block
            self._target.write(final)
            self._target.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _tarinfo(name: str, source: Path | None, *, directory: bool) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        assert source is not None
        st = source.stat()
        info.size = st.st_size
        info.mode = _normalised_mode(st.st_mode)
    return info


def _normalised_mode(mode: int) -> int:
    return 0o755 if mode & stat.S_IXUSR else 0o644


def _entries(root: Path) -> list[tuple[str, Path]]:
    """Every directory and regular file under root, relative POSIX paths, sorted."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        base = Path(dirpath)
        for name in dirnames:
            found.append(((base / name).relative_to(root).as_posix() + "/", base / name))
        for name in filenames:
            path = base / name
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"{path}: only regular files and directories can be packaged")
            found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


Member = tuple[tarfile.TarInfo, Path | None]  # a tar header, and the file its content comes from


def _write_layer(out_path: Path, members: Iterable[Member], compression: Compression) -> Layer:
    with out_path.open("wb") as raw:
        compressed = HashingWriter(raw)
        gz: Any  # duck-typed file objects: only write() (and close()) are used
        if compression.block_size is None:
            gz = gzip.GzipFile(
                filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=compression.level
            )
        else:
            threads = compression.threads or os.cpu_count() or 1
            gz = _BlockGzipWriter(compressed, compression.level, compression.block_size, threads)
        uncompressed = HashingWriter(gz)
        tar_target: Any = uncompressed
        try:
            with tarfile.open(fileobj=tar_target, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for info, path in members:
                    if path is None or not info.isreg():
                        tar.addfile(info)
                    else:
                        with path.open("rb") as handle:
                            tar.addfile(info, handle)
        except BaseException:
            if isinstance(gz, _BlockGzipWriter):
                gz.abort()
            raise
        gz.close()
    return Layer(
        path=out_path,
        digest="sha256:" + compressed.sha.hexdigest(),
        diff_id="sha256:" + uncompressed.sha.hexdigest(),
        size=compressed.size,
    )


def build_directory_layer(source: Path, prefix: str, workdir: Path | None = None) -> Layer:
    """Pack `source`'s contents under `prefix` (e.g. "opt/ml/model") into a reproducible layer.

    The parent directories of `prefix` are included as entries so that the layer stands alone.
    The file is written into `workdir` (a fresh temporary directory when None); the caller
    deletes it when done.
    """
    source = Path(source)
    if not source.is_dir():
        raise ValueError(f"{source} is not a directory")
    prefix = prefix.strip("/")
    out_dir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="qa-layer-"))

    def members() -> Iterator[Member]:
        parts = prefix.split("/")
        for depth in range(1, len(parts) + 1):
            yield _tarinfo("/".join(parts[:depth]) + "/", None, directory=True), None
        for relative, path in _entries(source):
            name = f"{prefix}/{relative}"
            if relative.endswith("/"):
                yield _tarinfo(name, None, directory=True), None
            else:
                yield _tarinfo(name, path, directory=False), path

    return _write_layer(out_dir / "layer.tar.gz", members(), Compression())


# -- whole image subtrees ---------------------------------------------------------------------


def tree_members(root: Path, owners: Mapping[str, tuple[int, int]] | None = None) -> list[Member]:
    """Tar headers for everything under `root`, named as paths in the image (root = "/").

    Sorted, mtime 0, uid/gid 0 except the paths in `owners` ("home/serving" -> (uid, gid)),
    no owner names, modes 0755 (directories, executables) / 0644 (other files) / 0777 (symlinks).
    Symlinks are kept as they are; a file seen again under another name (same inode) becomes a
    hardlink to the first name in sorted order. Anything else (sockets, devices) is refused.
    """
    root = Path(root)
    owners = dict(owners or {})
    unowned = set(owners)
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        descend = []
        for name in dirnames:
            path = base / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                found.append((relative, path))
            else:
                found.append((relative + "/", path))
                descend.append(name)
        dirnames[:] = sorted(descend)
        for name in filenames:
            path = base / name
            found.append((path.relative_to(root).as_posix(), path))
    members: list[Member] = []
    first_names: dict[tuple[int, int], str] = {}
    for relative, path in sorted(found):
        name = relative.rstrip("/")
        info = tarfile.TarInfo(name)
        info.mtime = 0
        info.uid, info.gid = owners.get(name, (0, 0))
        unowned.discard(name)
        info.uname = info.gname = ""
        st = path.lstat()
        content: Path | None = None
        if stat.S_ISLNK(st.st_mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
            info.mode = 0o777
        elif stat.S_ISDIR(st.st_mode):
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
        elif stat.S_ISREG(st.st_mode):
            info.mode = _normalised_mode(st.st_mode)
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in first_names:
                info.type = tarfile.LNKTYPE
                info.linkname = first_names[inode]
            else:
                first_names.setdefault(inode, name)
                info.size = st.st_size
                content = path
        else:
            raise ValueError(f"{path}: only files, directories and symlinks can be packaged")
        members.append((info, content))
    if unowned:
        raise ValueError(f"owners name paths that are not under {root}: {sorted(unowned)}")
    return members


def build_tree_layer(
    root: Path,
    out_path: Path,
    *,
    owners: Mapping[str, tuple[int, int]] | None = None,
    compression: Compression | None = None,
) -> Layer:
    """Pack the tree at `root` as a reproducible layer at `out_path` (see tree_members)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a directory")
    return _write_layer(Path(out_path), tree_members(root, owners), compression or Compression())
