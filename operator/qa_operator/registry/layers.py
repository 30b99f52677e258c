"""Deterministic image layers: the same directory always gives the same layer digests.

A layer is a gzipped tar. To make it reproducible we sort entries, fix mtime/uid/gid/owner names,
normalise modes (0755 for directories and executables, 0644 otherwise) and write the gzip header
with mtime 0 and no file name. Then a package that did not change costs zero bytes to push again.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# Fixed, so that the compressed bytes (and digest) depend only on the content and zlib.
GZIP_LEVEL = 6


@dataclass(frozen=True)
class Layer:
    """A built layer: its compressed file on disk plus the two digests an image needs."""

    path: Path  # the .tar.gz file
    digest: str  # sha256 of the compressed bytes: the blob digest in the manifest
    diff_id: str  # sha256 of the uncompressed tar: goes in the config's rootfs.diff_ids
    size: int  # compressed size in bytes

    def open(self) -> IO[bytes]:
        return self.path.open("rb")


class _HashingWriter:
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
        info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
    return info


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
    out_path = out_dir / "layer.tar.gz"

    with out_path.open("wb") as raw:
        compressed = _HashingWriter(raw)
        gz_target: Any = compressed  # duck-typed file objects: only write() is used
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=gz_target, mtime=0, compresslevel=6
        ) as gz:
            tar_target: Any = _HashingWriter(gz)
            uncompressed = tar_target
            with tarfile.open(fileobj=tar_target, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                parts = prefix.split("/")
                for depth in range(1, len(parts) + 1):
                    name = "/".join(parts[:depth]) + "/"
                    tar.addfile(_tarinfo(name, None, directory=True))
                for relative, path in _entries(source):
                    name = f"{prefix}/{relative}"
                    if relative.endswith("/"):
                        tar.addfile(_tarinfo(name, None, directory=True))
                    else:
                        with path.open("rb") as handle:
                            tar.addfile(_tarinfo(name, path, directory=False), handle)
    return Layer(
        path=out_path,
        digest="sha256:" + compressed.sha.hexdigest(),
        diff_id="sha256:" + uncompressed.sha.hexdigest(),
        size=compressed.size,
    )
