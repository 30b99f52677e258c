"""Running an image from a registry as an isolated process, the way SageMaker runs a container.

- `ContainerRuntime.pull` fetches an image by digest, verifies the manifest digest, every blob's
  digest and every layer's diff_id, and unpacks it into a root filesystem cached by manifest
  digest (unpacked into a temporary directory, then renamed: a half-unpacked rootfs is never
  used). Layers are streamed (never a whole layer in memory) and applied in order with OCI
  whiteouts; paths that would leave the root are refused. An image whose first layers (by
  diff_id) are those of a cached image, or a cached layer chain, starts from a hard-linked copy
  of that rootfs and applies only the rest. Every unpack keeps its image's parent chain (all
  layers but the last, keyed by the OCI ChainID) as an entry of its own, so that the next image
  differing only in its top layer (the serving image after a code change) applies one layer.
  The cache is bounded (`max_bytes`, least recently used go first; never a rootfs a running
  container uses).
- `ContainerRuntime.run` starts it under bubblewrap: read-only root, fresh /dev, /proc and /tmp,
  the host's network, every other namespace private, no capabilities, the image's user, killed
  with its parent. bubblewrap is preferred over runc (needs an OCI bundle and, rootless, cgroup
  delegation) and over unshare(1) (no read-only root or die-with-parent without a script).
- `extract_model_archive` and `sagemaker_environment` place the model and set the environment as
  SageMaker does for a hosting container.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gzip
import hashlib
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tarfile
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol

import requests

from devstack.cache import cache_dir as default_cache_dir
from qa_operator.imagebuild.cache import size_limit_from_env
from qa_operator.registry.client import (
    DOCKER_MANIFEST,
    INDEX_MEDIA_TYPES,
    OCI_MANIFEST,
    DigestMismatch,
    Manifest,
    RegistryClient,
)
from qa_operator.registry.images import parse_reference

IMAGE_MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
IMAGE_CONFIGS = (
    "application/vnd.docker.container.image.v1+json",
    "application/vnd.oci.image.config.v1+json",
)
_LAYER_COMPRESSION = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.v1.tar": "none",
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"
_MAX_SYMLINK_HOPS = 40
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_READ_SIZE = 1024 * 1024
MAX_GB_ENV = "QA_OPERATOR_ROOTFS_CACHE_MAX_GB"
DEFAULT_MAX_BYTES = 30 * 1024**3
# Between a pull and the run that follows it, another process's eviction must not take the rootfs.
DEFAULT_KEEP_RECENT_S = 600.0
_USE_MARKER = "in-use.lock"  # mtime: last use; a shared flock while a container runs on it
_CHAIN = "chain-"  # a layer chain's entry: chain-<ChainID hex>/rootfs, chain.json, in-use.lock
_CHAIN_FILE = "chain.json"
# `.evicting-<entry>-<pid>`: an entry being removed. Its remover holds a flock on the directory
# (taken before the rename), as an unpack holds one on its staging directory from its creation.
_EVICTING = ".evicting-"
# A staging directory is left alone this long whatever its lock says: it is unlocked between
# mkdtemp and the flock, and versions of this module before the locks did not take one.
_STAGING_GRACE_S = 3600.0

# SageMaker's hosting contract (https://docs.aws.amazon.com/sagemaker/latest/dg/
# your-algorithms-inference-code.html): `docker run <image> serve`, the model under
# /opt/ml/model, requests on port 8080, SIGTERM then SIGKILL 30 s later.
SAGEMAKER_MODEL_DIR = "/opt/ml/model"
SAGEMAKER_PORT = 8080
SAGEMAKER_SERVE_ARGS = ("serve",)
SAGEMAKER_STOP_TIMEOUT_S = 30.0


class ImageError(Exception):
    """The image is refused: unsupported type, content that does not match its digests, or a
    layer that would write outside the root."""


class ContainerError(RuntimeError):
    """The container could not start, or ended or stayed silent while it was awaited."""


# -- images ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeConfig:
    """The parts of an image config that say how to run it."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    user: str = ""
    working_dir: str = "/"
    exposed_ports: tuple[str, ...] = ()

    @classmethod
    def from_image_config(cls, config: Mapping[str, Any]) -> RuntimeConfig:
        runtime = config.get("config") or {}
        env = tuple(
            (name, value)
            for name, _, value in (item.partition("=") for item in runtime.get("Env") or [])
        )
        return cls(
            entrypoint=tuple(runtime.get("Entrypoint") or ()),
            cmd=tuple(runtime.get("Cmd") or ()),
            env=env,
            user=runtime.get("User") or "",
            working_dir=runtime.get("WorkingDir") or "/",
            exposed_ports=tuple(sorted(runtime.get("ExposedPorts") or {})),
        )


@dataclass(frozen=True)
class UnpackedImage:
    digest: str  # the image manifest's digest: the cache key
    rootfs: Path
    config: dict[str, Any] = field(compare=False)
    from_cache: bool = field(default=False, compare=False)
    # Layers unpacked by this pull (0 from the cache), and the cache entry whose rootfs was
    # hard-link-copied to start from, when one was: a cached image (its manifest digest) or a
    # layer chain kept by an earlier unpack (its ChainID, see `chain_id`).
    layers_applied: int = field(default=0, compare=False)
    based_on: str | None = field(default=None, compare=False)

    @property
    def runtime(self) -> RuntimeConfig:
        return RuntimeConfig.from_image_config(self.config)


def default_registry_url(host: str) -> str:
    """The registry's base URL for a reference's host: plain HTTP on loopback, else HTTPS."""
    local = host.rsplit(":", 1)[0] in ("localhost", "127.0.0.1", "[::1]")
    return f"{'http' if local else 'https'}://{host}"


def chain_id(diff_ids: Sequence[str]) -> str:
    """The OCI image spec's ChainID of the layers `diff_ids` (bottom first): ChainID(L0) =
    DiffID(L0), ChainID(L0|...|Ln) = sha256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln))."""
    return _chain_ids(diff_ids)[-1]


def _chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """The ChainID of every leading run of `diff_ids`: [ChainID(L0), ChainID(L0|L1), ...]."""
    if not diff_ids:
        raise ValueError("a chain has at least one layer")
    chains = [diff_ids[0]]
    for diff_id in diff_ids[1:]:
        chains.append("sha256:" + hashlib.sha256(f"{chains[-1]} {diff_id}".encode()).hexdigest())
    return chains


class _IterReader(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _HashingReader:
    """Reads through to `source`, hashing every byte: the diff_id of an uncompressed layer."""

    def __init__(self, source: _Readable) -> None:
        self._source = source
        self.sha = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.sha.update(data)
        return data

    def drain(self) -> None:
        while self.read(_READ_SIZE):
            pass


def _finish_download(chunks: Iterator[bytes]) -> None:
    """Read the rest of a blob, so that its digest check (at the end) gives its verdict."""
    for _chunk in chunks:
        pass


@contextlib.contextmanager
def _uncompressed(chunks: Iterator[bytes], compression: str) -> Iterator[_Readable]:
    """The layer's tar stream, decompressed while it downloads.

    gzip goes through pigz when installed: it decompresses in another process while this one
    unpacks. When unpacking fails, the download is finished first: if the blob does not match
    its digest, DigestMismatch is the error raised, not whatever the bad bytes caused.
    """
    stream: _Readable
    if compression == "none":
        stream = io.BufferedReader(_IterReader(chunks), _READ_SIZE)
    elif shutil.which("pigz") is None:
        stream = gzip.GzipFile(fileobj=io.BufferedReader(_IterReader(chunks), _READ_SIZE))
    else:
        with _pigz(chunks) as output:
            yield output
        return
    try:
        yield stream
    except DigestMismatch:
        raise
    except Exception as error:
        try:
            _finish_download(chunks)
        except DigestMismatch as mismatch:
            raise mismatch from error
        raise


@contextlib.contextmanager
def _pigz(chunks: Iterator[bytes]) -> Iterator[IO[bytes]]:
    pigz = shutil.which("pigz")
    assert pigz is not None
    process = subprocess.Popen(
        [pigz, "-dc"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdin is not None and process.stdout is not None
    download_failure: list[BaseException] = []

    def feed() -> None:
        assert process.stdin is not None
        try:
            for chunk in chunks:
                process.stdin.write(chunk)
        except BrokenPipeError:  # pigz gave up on the data: the digest's verdict still counts
            try:
                _finish_download(chunks)
            except BaseException as error:
                download_failure.append(error)
        except BaseException as error:
            download_failure.append(error)
        finally:
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()

    def verdict() -> BaseException | None:
        return download_failure[0] if download_failure else None

    feeder = threading.Thread(target=feed, name="layer-download", daemon=True)
    feeder.start()
    try:
        yield process.stdout
    except BaseException as error:
        process.kill()
        process.stdout.close()
        feeder.join()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()
        failure = verdict()
        if isinstance(failure, DigestMismatch) and not isinstance(error, DigestMismatch):
            raise failure from error
        raise
    process.stdout.close()
    feeder.join()
    process.wait()
    assert process.stderr is not None
    stderr = process.stderr.read().decode(errors="replace").strip()
    process.stderr.close()
    failure = verdict()
    if failure is not None:
        raise failure
    if process.returncode != 0:
        raise ImageError(f"the layer is not valid gzip: pigz: {stderr or process.returncode}")


def _clean_name(name: str) -> str | None:
    """A layer member's path relative to the root; None for the root itself."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"layer entry {name!r} leaves the root")
    return "/".join(parts) or None


class _RootWriter:
    """Applies layers to a root directory as a container runtime does.

    Every path is resolved inside the root: symlinks met on the way are followed as the
    container would see them (an absolute target starts again from the root, `..` stops at it),
    so no entry can write outside the root, whatever links earlier entries made.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.as_root = os.geteuid() == 0
        self._directories: dict[str, tuple[int, int, int, int]] = {}  # host path -> attrs
        self._resolved: dict[str, Path] = {}

    def resolve(self, name: str, *, create: bool) -> Path | None:
        """The host path of `name`, following links in its parents but not its last component;
        None when a parent is missing and `create` is False."""
        parent, _, base = name.rpartition("/")
        directory = self.resolve_directory(parent, create=create)
        return None if directory is None else directory / base

    def resolve_directory(self, name: str, *, create: bool) -> Path | None:
        """The host directory `name` leads to, every symlink on the way followed in the root."""
        if name in self._resolved:
            return self._resolved[name]
        pending = [part for part in name.split("/") if part]
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.root.joinpath(*resolved, part)
            if candidate.is_symlink():
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise ImageError(f"{name}: too many levels of symbolic links")
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                pending = [p for p in target.split("/") if p not in ("", ".")] + pending
                continue
            if not candidate.exists():
                if not create:
                    return None
                candidate.mkdir(mode=0o755)
            elif not candidate.is_dir():
                raise ImageError(f"{name}: {'/'.join([*resolved, part])} is not a directory")
            resolved.append(part)
        directory = self.root.joinpath(*resolved)
        self._resolved[name] = directory
        return directory

    def _forget_resolutions(self) -> None:
        self._resolved.clear()

    def _remove(self, path: Path) -> None:
        if path.is_symlink():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
            return  # a file is no step on any path resolved so far
        else:
            return
        self._forget_resolutions()

    def apply(self, tar: tarfile.TarFile) -> None:
        written: set[str] = set()
        for member in tar:
            name = _clean_name(member.name)
            if name is None:
                continue
            parent, _, base = name.rpartition("/")
            if base == _OPAQUE:
                self._make_opaque(parent, written)
            elif base.startswith(_WHITEOUT + _WHITEOUT):
                continue  # other AUFS metadata
            elif base.startswith(_WHITEOUT):
                hidden = f"{parent}/{base[len(_WHITEOUT) :]}" if parent else base[len(_WHITEOUT) :]
                if hidden not in written:  # a whiteout hides lower layers only
                    path = self.resolve(hidden, create=False)
                    if path is not None:
                        self._remove(path)
            else:
                self._write(tar, member, name)
                written.add(name)

    def _make_opaque(self, directory: str, written: set[str]) -> None:
        """Hide everything lower layers put in `directory`; keep what this layer wrote."""
        path = self.resolve_directory(directory, create=False)
        if path is None:
            return

        def prune(host_dir: Path, name: str) -> None:
            for child in list(os.scandir(host_dir)):
                child_name = f"{name}/{child.name}" if name else child.name
                if child_name not in written:
                    self._remove(Path(child.path))
                elif child.is_dir(follow_symlinks=False):
                    prune(Path(child.path), child_name)

        if path.is_dir() and not path.is_symlink():
            prune(path, directory)
        self._forget_resolutions()

    def _write(self, tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> None:
        path = self.resolve(name, create=True)
        assert path is not None
        exists = path.is_symlink() or path.exists()
        if member.isdir():
            if exists and not (path.is_dir() and not path.is_symlink()):
                self._remove(path)
                exists = False
            if not exists:
                path.mkdir(mode=0o700)
            os.chmod(path, 0o700 | (member.mode & 0o7777))  # writable until the end
            self._directories[str(path)] = (member.mode, member.uid, member.gid, int(member.mtime))
            return
        if exists:
            self._remove(path)
        if member.isreg():
            source = tar.extractfile(member)
            assert source is not None
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as output:
                shutil.copyfileobj(source, output, _READ_SIZE)
        elif member.issym():
            os.symlink(member.linkname, path)
            self._forget_resolutions()
        elif member.islnk():
            target_name = _clean_name(member.linkname)
            if target_name is None:
                raise ImageError(f"{name}: hard link to the root")
            target = self.resolve(target_name, create=False)
            if target is None or not (target.is_symlink() or target.is_file()):
                raise ImageError(f"{name}: hard link to {member.linkname!r}, not a file here")
            os.link(target, path, follow_symlinks=False)
            return  # shares the target's inode: its owner, mode and times
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            return  # device nodes: the sandbox gets its own /dev
        self._set_attributes(path, member.mode, member.uid, member.gid, int(member.mtime))

    def _set_attributes(self, path: Path, mode: int, uid: int, gid: int, mtime: int) -> None:
        symlink = path.is_symlink()
        if self.as_root:
            os.lchown(path, uid, gid)  # before chmod: chown clears set-user-ID bits
        if not symlink:
            os.chmod(path, mode & 0o7777)
        with contextlib.suppress(OSError):
            os.utime(path, (mtime, mtime), follow_symlinks=False)

    def copy_tree(self, source: Path) -> None:
        """Start from `source`'s tree as `cp -al` would: directories made anew, everything else
        hard-linked. Safe to write over: every write unlinks a path before creating it, so no
        shared inode is ever modified. Directories stay writable until `finish` gives them the
        source's modes, owners and times."""
        stack = [(source, self.root)]
        while stack:
            from_dir, to_dir = stack.pop()
            self._adopt_directory(to_dir, os.stat(from_dir))
            for entry in os.scandir(from_dir):
                target = to_dir / entry.name
                if entry.is_dir(follow_symlinks=False):
                    target.mkdir(mode=0o700)
                    stack.append((Path(entry.path), target))
                else:
                    os.link(entry.path, target, follow_symlinks=False)

    def _adopt_directory(self, path: Path, stat: os.stat_result) -> None:
        os.chmod(path, 0o700 | (stat.st_mode & 0o7777))
        self._directories[str(path)] = (
            stat.st_mode,
            stat.st_uid,
            stat.st_gid,
            int(stat.st_mtime),
        )

    def finish(self) -> None:
        """Directory modes, owners and times, deepest first, once nothing more is written."""
        for host_path in sorted(self._directories, key=lambda p: p.count("/"), reverse=True):
            path = Path(host_path)
            if path.is_dir() and not path.is_symlink():
                self._set_attributes(path, *self._directories[host_path])


def default_max_bytes() -> float:
    """$QA_OPERATOR_ROOTFS_CACHE_MAX_GB in GiB (`inf`: no bound), else 30 GiB."""
    return size_limit_from_env(MAX_GB_ENV, DEFAULT_MAX_BYTES)


@dataclass(frozen=True)
class _Base:
    """A cache entry (image or layer chain) holding an image's first `layers` layers."""

    entry: Path
    layers: int

    @property
    def key(self) -> str:
        """The image's manifest digest, or the chain's ChainID."""
        return "sha256:" + self.entry.name.removeprefix(_CHAIN)


class ContainerRuntime:
    """Pulls images into a rootfs cache and runs them under bubblewrap.

    `cache_dir` (default: `rootfs` under $QA_OPERATOR_CACHE or ~/.cache/qa-operator) holds one
    directory per image manifest digest, with `rootfs/`, `config.json`, `manifest.json` and
    `in-use.lock` (its mtime is the last use), and one per layer chain an unpack kept (an
    image's layers but the last: `chain-<ChainID hex>/` with `rootfs/`, `chain.json` and
    `in-use.lock`), which the next image sharing those layers starts from.

    After each unpack, the least recently used entries are removed until the cache (its regular
    files, each inode counted once: reused layers are hard links) holds at most `max_bytes`
    (default $QA_OPERATOR_ROOTFS_CACHE_MAX_GB GiB, else 30 GiB). Never removed: the entries just
    made and the one the pull started from, entries used in the last `keep_recent_s`, entries a
    running container holds (a shared flock on `in-use.lock`, kept by bubblewrap) and entries a
    pull is copying from (the same lock).
    """

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        bwrap: str | None = None,
        max_bytes: float | None = None,
        keep_recent_s: float = DEFAULT_KEEP_RECENT_S,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir("rootfs")
        self._bwrap = bwrap
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        self.keep_recent_s = keep_recent_s

    # -- pulling ----------------------------------------------------------------------------

    def cached(self, digest: str) -> UnpackedImage | None:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a sha256 digest")
        entry = self.cache_dir / digest.removeprefix("sha256:")
        config_path = entry / "config.json"
        if not config_path.is_file():
            return None
        config = json.loads(config_path.read_text())
        _mark_used(entry)
        return UnpackedImage(digest=digest, rootfs=entry / "rootfs", config=config, from_cache=True)

    def pull(self, reference: str, *, client: RegistryClient | None = None) -> UnpackedImage:
        """The image `host/repository@sha256:...`, unpacked (from the cache when there).

        `client` reads the registry (an anonymous one for the reference's host when None).
        """
        ref = parse_reference(reference)
        if ref.digest is None:
            raise ValueError(f"{reference!r}: pull by digest (host/repository@sha256:...)")
        if client is not None:
            return self.pull_digest(client, ref.repository, ref.digest)
        if ref.host is None:
            raise ValueError(f"{reference!r} names no registry host; pass a client")
        cached = self.cached(ref.digest)
        if cached is not None:
            return cached
        anonymous = RegistryClient(default_registry_url(ref.host))
        try:
            return self.pull_digest(anonymous, ref.repository, ref.digest)
        finally:
            anonymous.close()

    def pull_digest(self, client: RegistryClient, repository: str, digest: str) -> UnpackedImage:
        cached = self.cached(digest)
        if cached is not None:
            return cached
        manifest = client.get_manifest(repository, digest)  # verifies the manifest's digest
        if manifest.media_type in INDEX_MEDIA_TYPES:
            manifest = self._linux_amd64(client, repository, manifest)
            cached = self.cached(manifest.digest)
            if cached is not None:
                return cached
        return self._unpack(client, repository, manifest)

    @staticmethod
    def _linux_amd64(client: RegistryClient, repository: str, index: Manifest) -> Manifest:
        for entry in index.json().get("manifests", []):
            platform = entry.get("platform") or {}
            if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
                return client.get_manifest(repository, entry["digest"])
        raise ImageError(f"{repository}@{index.digest}: the index has no linux/amd64 image")

    @staticmethod
    def _image_parts(
        client: RegistryClient, repository: str, manifest: Manifest
    ) -> tuple[list[dict[str, Any]], list[str], bytes, dict[str, Any]]:
        """The layers, diff_ids, config bytes and parsed config of an image that can run."""
        where = f"{repository}@{manifest.digest}"
        if manifest.media_type not in IMAGE_MANIFESTS:
            raise ImageError(
                f"{where} is a {manifest.media_type!r}; only Docker v2 schema 2 and OCI image "
                "manifests can be run"
            )
        body = manifest.json()
        config_type = body.get("config", {}).get("mediaType")
        if config_type not in IMAGE_CONFIGS:
            raise ImageError(f"{where}: config type {config_type!r} is not a container image")
        layers = body.get("layers") or []
        for layer in layers:
            if layer.get("mediaType") not in _LAYER_COMPRESSION:
                raise ImageError(f"{where}: layer type {layer.get('mediaType')!r} not supported")
        config_bytes = client.get_blob(repository, body["config"]["digest"])  # digest checked
        config = json.loads(config_bytes)
        if (config.get("os"), config.get("architecture")) != ("linux", "amd64"):
            raise ImageError(f"{where} is {config.get('os')}/{config.get('architecture')}")
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(layers):
            raise ImageError(f"{where}: {len(layers)} layers but {len(diff_ids)} diff_ids")
        for diff_id in diff_ids:  # a layer chain's entry is named after them
            if not isinstance(diff_id, str) or not _DIGEST.fullmatch(diff_id):
                raise ImageError(f"{where}: diff_id {diff_id!r} is not a sha256 digest")
        return layers, diff_ids, config_bytes, config

    def _unpack(self, client: RegistryClient, repository: str, manifest: Manifest) -> UnpackedImage:
        """Unpack the image into its entry, on the cached entry sharing most leading layers.

        Unless that entry already holds every layer but the last, the image's parent chain
        (every layer but the last) is unpacked first into an entry of its own (`chain-<ChainID
        hex>`), and the image's rootfs starts as a hard-linked copy of it: the next image
        differing only in its top layer starts from that chain and applies one layer. The chain
        is complete before the copy is taken and the last layer is applied to the copy only,
        which unlinks every path before writing it: the chain's files are never written.
        """
        where = f"{repository}@{manifest.digest}"
        layers, diff_ids, config_bytes, config = self._image_parts(client, repository, manifest)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        hex_digest = manifest.digest.removeprefix("sha256:")
        parent_layers = len(layers) - 1  # the parent chain: every layer but the last
        base = self._longest_cached_prefix(diff_ids)
        keep = [manifest.digest]
        started_from: _Base | None = None
        with self._staging(f".{hex_digest[:12]}-") as staging:
            rootfs = staging / "rootfs"
            rootfs.mkdir()
            writer = _RootWriter(rootfs)
            if base is not None and base.layers >= parent_layers:
                if self._start_from(base, writer):
                    started_from = base
                else:
                    base = None  # evicted since it was found
            if started_from is not None:
                first = started_from.layers
            elif parent_layers > 0:
                started_from = self._unpack_chain(
                    client,
                    repository,
                    where,
                    layers[:parent_layers],
                    diff_ids[:parent_layers],
                    base=base,
                    then_copy_to=writer,
                )
                keep.append(chain_id(diff_ids[:parent_layers]))
                first = parent_layers
            else:
                first = 0
            self._apply_layers(client, repository, where, writer, layers[first:], diff_ids[first:])
            writer.finish()
            _add_runtime_mount_points(rootfs, RuntimeConfig.from_image_config(config))
            (staging / "config.json").write_bytes(config_bytes)
            (staging / "manifest.json").write_bytes(manifest.body)
            _mark_used(staging)
            staging.chmod(0o755)
            _publish(staging, self.cache_dir / hex_digest)
        image = self.cached(manifest.digest)
        assert image is not None
        based_on = None if started_from is None else started_from.key
        self.evict(keep=keep + ([based_on] if based_on else []))
        return UnpackedImage(
            image.digest,
            image.rootfs,
            image.config,
            from_cache=False,
            layers_applied=len(layers) - (0 if started_from is None else started_from.layers),
            based_on=based_on,
        )

    def _unpack_chain(
        self,
        client: RegistryClient,
        repository: str,
        where: str,
        layers: Sequence[dict[str, Any]],
        diff_ids: Sequence[str],
        *,
        base: _Base | None,
        then_copy_to: _RootWriter,
    ) -> _Base | None:
        """Unpack the layer chain `diff_ids` into its entry (on `base` when it can be held),
        hard-link-copy it into `then_copy_to`, and publish it; the entry it started from."""
        hex_chain = chain_id(diff_ids).removeprefix("sha256:")
        with self._staging(f".{_CHAIN}{hex_chain[:12]}-") as staging:
            rootfs = staging / "rootfs"
            rootfs.mkdir()
            writer = _RootWriter(rootfs)
            if base is not None and not self._start_from(base, writer):
                base = None
            first = 0 if base is None else base.layers
            self._apply_layers(client, repository, where, writer, layers[first:], diff_ids[first:])
            writer.finish()  # final modes, owners and times: the copy takes them from here
            chain = {"chain_id": "sha256:" + hex_chain, "diff_ids": list(diff_ids)}
            (staging / _CHAIN_FILE).write_text(json.dumps(chain))
            _mark_used(staging)
            # Copied before it is published: no other process can evict it in between.
            then_copy_to.copy_tree(rootfs)
            staging.chmod(0o755)
            _publish(staging, self.cache_dir / f"{_CHAIN}{hex_chain}")
        return base

    @staticmethod
    def _start_from(base: _Base, writer: _RootWriter) -> bool:
        """Hard-link-copy `base`'s rootfs into `writer`'s root; False when it was evicted."""
        with _holding(base.entry) as held:  # no eviction while it is copied
            if not held or not (base.entry / "rootfs").is_dir():
                return False
            writer.copy_tree(base.entry / "rootfs")
        _mark_used(base.entry)
        return True

    @staticmethod
    def _apply_layers(
        client: RegistryClient,
        repository: str,
        where: str,
        writer: _RootWriter,
        layers: Sequence[dict[str, Any]],
        diff_ids: Sequence[str],
    ) -> None:
        """Download and apply `layers` in order, each checked against its diff_id."""
        for layer, diff_id in zip(layers, diff_ids, strict=True):
            chunks = client.iter_blob(repository, layer["digest"])  # digest checked at the end
            with _uncompressed(chunks, _LAYER_COMPRESSION[layer["mediaType"]]) as stream:
                hashing = _HashingReader(stream)
                tar_source: Any = hashing
                with tarfile.open(fileobj=tar_source, mode="r|", bufsize=_READ_SIZE) as tar:
                    writer.apply(tar)
                hashing.drain()
            if "sha256:" + hashing.sha.hexdigest() != diff_id:
                raise ImageError(
                    f"{where}: layer {layer['digest']} unpacks to sha256:"
                    f"{hashing.sha.hexdigest()}, but the config's diff_id is {diff_id}"
                )

    @contextlib.contextmanager
    def _staging(self, prefix: str) -> Iterator[Path]:
        """A new directory in the cache to build an entry in (then `_publish` it), removed if
        the block fails. A flock on the directory, held until the block ends, tells
        `_remove_leftovers` in any process that its owner is alive."""
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=self.cache_dir))
        lock = _lock_directory(staging)
        try:
            yield staging
        except BaseException:
            _remove_tree(staging)
            raise
        finally:
            if lock is not None:
                os.close(lock)

    def _longest_cached_prefix(self, diff_ids: Sequence[str]) -> _Base | None:
        """The cached image or layer chain whose layers (diff_ids) are the most leading layers
        of `diff_ids`, a chain on a tie (it has no other image's mount points); None when no
        entry's layers lead them."""
        best: _Base | None = None
        chains = _chain_ids(diff_ids) if diff_ids else []
        for count in range(len(chains), 0, -1):
            entry = self.cache_dir / (_CHAIN + chains[count - 1].removeprefix("sha256:"))
            if (entry / _CHAIN_FILE).is_file():
                best = _Base(entry, count)
                break
        for entry in self._entries():
            if entry.name.startswith(_CHAIN):
                continue
            try:
                config = json.loads((entry / "config.json").read_text())
            except (OSError, ValueError):
                continue
            chain = list((config.get("rootfs") or {}).get("diff_ids") or [])
            if (
                chain
                and len(chain) <= len(diff_ids)
                and list(diff_ids[: len(chain)]) == chain
                and (best is None or len(chain) > best.layers)
            ):
                best = _Base(entry, len(chain))
        return best

    def _entries(self) -> list[Path]:
        """Every complete entry: images (`<manifest hex>`) and layer chains (`chain-<hex>`)."""
        if not self.cache_dir.is_dir():
            return []
        return [
            entry
            for entry in self.cache_dir.iterdir()
            if _DIGEST.fullmatch("sha256:" + entry.name.removeprefix(_CHAIN))
        ]

    def evict(self, *, keep: Sequence[str] = ()) -> list[str]:
        """Remove least recently used entries (images and layer chains) until the cache holds at
        most `max_bytes`; the keys removed (manifest digests, ChainIDs). `keep` (such keys),
        entries used in the last `keep_recent_s` and entries a running container holds or a
        pull copies from stay, whatever the bound."""
        self._remove_leftovers()
        now = time.time()
        kept: set[str] = set()
        for key in keep:
            kept |= {key.removeprefix("sha256:"), _CHAIN + key.removeprefix("sha256:")}
        holders: dict[tuple[int, int], list[str]] = {}  # inode -> the entries linking it
        sizes: dict[tuple[int, int], int] = {}
        last_used: dict[str, float] = {}
        for entry in self._entries():
            last_used[entry.name] = _last_used(entry)
            for inode, size in _regular_files(entry):
                holders.setdefault(inode, []).append(entry.name)
                sizes[inode] = size
        total = sum(sizes.values())
        evicted: list[str] = []
        for name in sorted(last_used, key=last_used.__getitem__):
            if total <= self.max_bytes:
                break
            if name in kept or now - last_used[name] < self.keep_recent_s:
                continue
            if not self._remove_entry(name):
                continue
            evicted.append("sha256:" + name.removeprefix(_CHAIN))
            for inode, names in holders.items():
                if name in names:
                    names.remove(name)
                    if not names:
                        total -= sizes[inode]
        return evicted

    def _remove_entry(self, name: str) -> bool:
        """Rename the entry out of sight and remove it; False when it is in use (a container
        runs on it, a pull copies from it, or its pull has not let go of it yet)."""
        entry = self.cache_dir / name
        with _holding(entry, exclusive=True) as held:
            if not held:
                return False
            # Locked before the rename: `.evicting-*` is never seen unlocked while we remove it.
            removal = _lock_directory(entry)
            if removal is None:
                return False
            doomed = self.cache_dir / f"{_EVICTING}{name}-{os.getpid()}"
            try:
                entry.rename(doomed)
            except OSError:
                os.close(removal)
                return False
        try:
            _remove_tree(doomed)
        finally:
            os.close(removal)
        return True

    def _remove_leftovers(self) -> None:
        """What killed pulls and evictions left: `.evicting-*` and staging directories whose
        owner is gone. A live owner holds a flock on the directory (and an `.evicting-*` name
        carries its pid), so a removal or an unpack in progress in any process is left alone."""
        if not self.cache_dir.is_dir():
            return
        now = time.time()
        for path in self.cache_dir.iterdir():
            if not path.name.startswith("."):
                continue
            if path.name.startswith(_EVICTING):
                if _remover_alive(path.name):
                    continue
            else:
                try:
                    if now - path.lstat().st_mtime < _STAGING_GRACE_S:
                        continue
                except OSError:
                    continue
            lock = _lock_directory(path)
            if lock is None:
                continue  # its owner is alive (or it is no directory of ours)
            try:
                _remove_tree(path)
            finally:
                os.close(lock)

    # -- running ----------------------------------------------------------------------------

    def bwrap(self) -> str:
        found = self._bwrap or shutil.which("bwrap")
        if not found:
            raise ContainerError(
                "bubblewrap (bwrap) runs the containers and is not installed: "
                "apt-get install bubblewrap (runc and unshare(1) are not supported)"
            )
        return found

    def run(
        self,
        image: UnpackedImage,
        *,
        command: Sequence[str] | None = None,
        entrypoint: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        user: str | None = None,
        working_dir: str | None = None,
        mounts: Sequence[Mount] = (),
        log_path: Path,
        hostname: str | None = None,
        stop_timeout: float = 10.0,
    ) -> Container:
        """Start the image as `docker run` would, isolated by bubblewrap; see Container.

        `command` replaces the image's Cmd, `entrypoint` its Entrypoint (and then its Cmd too,
        as in Docker). `env` is merged over the image's Env. `user` ("uid[:gid]" or names from
        the image's /etc/passwd) replaces the image's User. stdout and stderr go to `log_path`.
        """
        evicted = ContainerError(f"{image.rootfs} was evicted from the cache: pull it again")
        if not image.rootfs.is_dir():
            raise evicted
        runtime = image.runtime
        argv = [*(entrypoint if entrypoint is not None else runtime.entrypoint)]
        if command is not None:
            argv += command
        elif entrypoint is None:
            argv += runtime.cmd
        if not argv:
            raise ContainerError(f"{image.digest}: no command (the image has no Entrypoint/Cmd)")
        uid, gid, home = _resolve_user(image.rootfs, runtime.user if user is None else user)
        environment = dict(runtime.env)
        environment.setdefault("PATH", DEFAULT_PATH)
        environment.setdefault("HOME", home)
        if hostname:
            environment["HOSTNAME"] = hostname
        environment.update(env or {})
        workdir = working_dir or runtime.working_dir

        for mount in mounts:
            if not mount.source.exists():
                raise ContainerError(f"mount source {mount.source} does not exist")
            _ensure_mount_point(image.rootfs, mount.target, directory=mount.source.is_dir())
        _ensure_mount_point(image.rootfs, workdir, directory=True)

        arguments = [
            self.bwrap(),
            "--unshare-all",
            "--share-net",
            "--unshare-user",
            "--uid",
            str(uid),
            "--gid",
            str(gid),
            "--cap-drop",
            "ALL",
            # PR_SET_PDEATHSIG, which this sets, follows the *thread* that started bubblewrap,
            # not the process: a container started from a short-lived thread is killed when
            # that thread exits. Start containers from a thread that lives as long as they
            # should (moto_ext's runtime starts them all from one long-lived thread).
            "--die-with-parent",
            "--new-session",
            "--ro-bind",
            str(image.rootfs),
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--perms",
            "1777",
            "--tmpfs",
            "/tmp",
        ]
        if hostname:
            arguments += ["--hostname", hostname]
        for host_file in ("/etc/hosts", "/etc/resolv.conf"):  # as `docker run --network host`
            in_image = image.rootfs / host_file.lstrip("/")
            if Path(host_file).is_file() and in_image.is_file() and not in_image.is_symlink():
                arguments += ["--ro-bind", host_file, host_file]
        for mount in mounts:
            option = "--ro-bind" if mount.read_only else "--bind"
            arguments += [option, str(mount.source.resolve()), mount.target]
        arguments += ["--chdir", workdir, "--clearenv"]
        for name, value in environment.items():
            arguments += ["--setenv", name, value]
        try:
            hold = os.open(_mark_used(image.rootfs.parent), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise evicted from None
        try:
            # bubblewrap inherits the lock: held for exactly as long as the container runs.
            fcntl.flock(hold, fcntl.LOCK_SH)
            if not image.rootfs.is_dir():
                raise evicted
            return Container._start(
                arguments,
                argv,
                log_path=Path(log_path),
                image=image,
                stop_timeout=stop_timeout,
                hold_fds=(hold,),
            )
        finally:
            os.close(hold)


@dataclass(frozen=True)
class Mount:
    """A host path seen at `target` inside the container; read-only unless said otherwise."""

    source: Path
    target: str
    read_only: bool = True


def _mark_used(entry: Path) -> Path:
    """Record a use of a cache entry (the LRU order); its lock file."""
    marker = entry / _USE_MARKER
    with contextlib.suppress(OSError):
        marker.touch()
    return marker


def _last_used(entry: Path) -> float:
    for path in (entry / _USE_MARKER, entry):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return 0.0


@contextlib.contextmanager
def _holding(entry: Path, *, exclusive: bool = False) -> Iterator[bool]:
    """A flock on the entry's lock file: shared (blocking) to use it, exclusive (without
    waiting) to remove it. Yields whether it is held."""
    try:
        descriptor = os.open(entry / _USE_MARKER, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError:
        yield False
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB if exclusive else fcntl.LOCK_SH)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def _lock_directory(path: Path) -> int | None:
    """An exclusive flock on the directory itself, taken without waiting: its descriptor, or
    None when another process (or descriptor) holds it or `path` is no directory we can open.
    Whoever builds or removes a directory in the cache holds it, so leftovers removal can tell
    a live owner from a dead one."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def _remover_alive(name: str) -> bool:
    """Whether the process named by an `.evicting-<entry>-<pid>` directory runs (another
    process: this one's own removals are told apart by the directory's lock alone)."""
    pid_text = name.rsplit("-", 1)[-1]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _publish(staging: Path, entry: Path) -> None:
    """Rename a complete staging directory into place (atomic: a lookup sees all or nothing);
    when another pull made the entry meanwhile (the same content), drop ours."""
    try:
        staging.rename(entry)
    except OSError as error:
        if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        _remove_tree(staging)


def _regular_files(entry: Path) -> Iterator[tuple[tuple[int, int], int]]:
    """((st_dev, st_ino), size) of every regular file under `entry`."""
    stack = [str(entry)]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as listing:
            for item in listing:
                if item.is_dir(follow_symlinks=False):
                    stack.append(item.path)
                elif item.is_file(follow_symlinks=False):
                    stat = item.stat(follow_symlinks=False)
                    yield (stat.st_dev, stat.st_ino), stat.st_size


def _remove_tree(path: Path) -> None:
    """Remove a tree we unpacked, whatever modes its directories were given (as root they do
    not matter; as another user a directory without write, read or search permission stops
    the removal): a failed removal makes the parent directory writable (and a directory that
    could not be read, readable) and is retried, once per path. Only directories are given new
    modes, never files: a file's inode may be shared with other entries. Best effort: what
    still cannot be removed stays."""
    retried: set[str] = set()

    def make_writable_and_retry(function: Any, failed: str, info: Any) -> None:
        if isinstance(info[1], FileNotFoundError) or failed in retried:
            return  # removed meanwhile; or retried already
        retried.add(failed)
        with contextlib.suppress(OSError):
            _add_mode(os.path.dirname(failed) or ".", 0o700)
            if function in (os.unlink, os.rmdir):
                function(failed)
            elif os.path.isdir(failed) and not os.path.islink(failed):
                # os.open, os.scandir, os.lstat: the directory could not be read, so
                # rmtree skipped it: read it now, and remove it.
                _add_mode(failed, 0o700)
                shutil.rmtree(failed, onerror=make_writable_and_retry)
            else:
                os.unlink(failed)

    shutil.rmtree(path, onerror=make_writable_and_retry)


def _add_mode(directory: str, bits: int) -> None:
    mode = os.lstat(directory).st_mode & 0o7777
    if mode & bits != bits:
        os.chmod(directory, mode | bits)


def _add_runtime_mount_points(rootfs: Path, runtime: RuntimeConfig) -> None:
    """What Docker's init layer adds: mount points the runtime needs, and the WorkingDir."""
    for directory in ("dev", "proc", "tmp"):
        _ensure_mount_point(rootfs, directory, directory=True)
    for file in ("etc/hosts", "etc/resolv.conf"):
        _ensure_mount_point(rootfs, file, directory=False)
    _ensure_mount_point(rootfs, runtime.working_dir, directory=True)


def _ensure_mount_point(rootfs: Path, target: str, *, directory: bool) -> None:
    """Create `target` in the rootfs if missing (bubblewrap cannot, the root being read-only).

    Like Docker creating a volume's mount point: an empty directory or file, nothing else.
    """
    name = _clean_name(target)
    if name is None:
        return
    path = _RootWriter(rootfs).resolve(name, create=True)
    assert path is not None
    if path.is_symlink() or path.exists():
        return
    if directory:
        path.mkdir(mode=0o755)
    else:
        path.touch(mode=0o644)


def _lookup(path: Path, key: str, *, by_name: bool) -> list[str] | None:
    """The /etc/passwd or /etc/group line whose name (or id) is `key`."""
    if not path.is_file() or path.is_symlink():
        return None
    for line in path.read_text(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0 if by_name else 2] == key:
            return fields
    return None


def _resolve_user(rootfs: Path, user: str) -> tuple[int, int, str]:
    """(uid, gid, home) for an image's User, as Docker reads it: names from the image's own
    /etc/passwd and /etc/group; a bare uid takes its passwd entry's group, else 0."""
    name, _, group = (user or "0").partition(":")
    passwd = rootfs / "etc" / "passwd"
    entry = _lookup(passwd, name, by_name=not name.isdigit())
    if name.isdigit():
        uid = int(name)
    elif entry is not None:
        uid = int(entry[2])
    else:
        raise ContainerError(f"user {name!r} is not in the image's /etc/passwd")
    gid = int(entry[3]) if entry is not None and len(entry) > 3 and entry[3].isdigit() else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            group_entry = _lookup(rootfs / "etc" / "group", group, by_name=True)
            if group_entry is None:
                raise ContainerError(f"group {group!r} is not in the image's /etc/group")
            gid = int(group_entry[2])
    home = entry[5] if entry is not None and len(entry) > 5 and entry[5] else "/"
    return uid, gid, home


# -- containers -----------------------------------------------------------------------------------


class Container:
    """A running container: the bubblewrap process and the sandbox it made.

    `stop()` sends SIGTERM to the container's main process (as `docker stop` does), then
    SIGKILL once `timeout` has passed; the whole sandbox dies with bubblewrap. A context
    manager: leaving the block stops it.
    """

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        *,
        argv: list[str],
        log_path: Path,
        image: UnpackedImage,
        sandbox_init_pid: int | None,
        stop_timeout: float,
    ) -> None:
        self.process = process
        self.argv = argv
        self.log_path = log_path
        self.image = image
        self.stop_timeout = stop_timeout
        self._sandbox_init_pid = sandbox_init_pid

    @classmethod
    def _start(
        cls,
        bwrap_arguments: list[str],
        argv: list[str],
        *,
        log_path: Path,
        image: UnpackedImage,
        stop_timeout: float,
        hold_fds: tuple[int, ...] = (),
    ) -> Container:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        info_read, info_write = os.pipe()
        try:
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    [*bwrap_arguments, "--info-fd", str(info_write), "--", *argv],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={},
                    pass_fds=(info_write, *hold_fds),
                    close_fds=True,
                )
            os.close(info_write)
            info_write = -1
            info = _read_info(info_read, timeout=30.0)
        finally:
            if info_write >= 0:
                os.close(info_write)
            os.close(info_read)
        init_pid = info.get("child-pid")
        if not isinstance(init_pid, int):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
            if process.poll() is None:
                process.kill()
                process.wait()
            raise ContainerError(f"bubblewrap did not start the container:\n{tail}")
        return cls(
            process,
            argv=argv,
            log_path=log_path,
            image=image,
            sandbox_init_pid=init_pid,
            stop_timeout=stop_timeout,
        )

    def __enter__(self) -> Container:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Container({self.argv!r}, pid={self.process.pid}, log={self.log_path})"

    @property
    def pid(self) -> int:
        """bubblewrap's pid (the container's processes are its descendants)."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def running(self) -> bool:
        return self.process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """The container's exit status (bubblewrap passes its command's on)."""
        return self.process.wait(timeout)

    def main_pids(self) -> list[int]:
        """Host pids of the container's main process: the child of the sandbox's init."""
        if self._sandbox_init_pid is None:
            return []
        path = Path(f"/proc/{self._sandbox_init_pid}/task/{self._sandbox_init_pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except (OSError, ValueError):
            return []

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM to the main process, SIGKILL after `timeout`; returns the exit status."""
        if self.process.poll() is not None:
            return self.process.returncode
        timeout = self.stop_timeout if timeout is None else timeout
        targets = self.main_pids() or [self.process.pid]
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()  # the sandbox's init gets SIGKILL with it (--die-with-parent)
            return self.process.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_http(self, url: str, timeout: float = 60.0) -> requests.Response:
        return wait_http(url, timeout, container=self)


def _read_info(descriptor: int, *, timeout: float) -> dict[str, Any]:
    """bubblewrap's --info-fd JSON (the sandbox init's host pid); {} if it wrote none."""
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([descriptor], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(descriptor, 4096)
        if not chunk:
            break
        data += chunk
        with contextlib.suppress(ValueError):
            parsed: dict[str, Any] = json.loads(data)
            return parsed
    return {}


def wait_http(
    url: str, timeout: float = 60.0, *, container: Container | None = None
) -> requests.Response:
    """Poll `url` until it answers 200; raise ContainerError (with the container's log tail)
    when the container exits first or the deadline passes."""
    deadline = time.monotonic() + timeout
    session = requests.Session()
    session.trust_env = False  # loopback: never through a proxy from the environment
    with session:
        return _poll(session, url, timeout, deadline, container)


def _poll(
    session: requests.Session,
    url: str,
    timeout: float,
    deadline: float,
    container: Container | None,
) -> requests.Response:
    last = "no answer yet"
    while True:
        if container is not None and not container.running():
            raise ContainerError(
                f"container exited with {container.returncode} before {url} answered; "
                f"log {container.log_path}:\n{container.log_tail()}"
            )
        try:
            response = session.get(url, timeout=5)
            if response.status_code == 200:
                return response
            last = f"HTTP {response.status_code}"
        except requests.RequestException as error:
            last = type(error).__name__
        if time.monotonic() >= deadline:
            tail = f"; log {container.log_path}:\n{container.log_tail()}" if container else ""
            raise ContainerError(f"{url} did not answer 200 within {timeout:.0f} s ({last}){tail}")
        time.sleep(0.1)


# -- SageMaker ------------------------------------------------------------------------------------


def extract_model_archive(model_tar_gz: Path, dest: Path) -> Path:
    """Unpack a model.tar.gz into `dest` (created; must be empty) as SageMaker unpacks
    ModelDataUrl into /opt/ml/model: paths leaving `dest`, links pointing out of it and device
    files are refused (tarfile's "data" filter); everything ends world-readable, since the
    container's user need not be the one who extracted it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ValueError(f"{dest} is not empty")
    if not hasattr(tarfile, "data_filter"):
        raise RuntimeError("safe extraction needs Python >= 3.11.4 (tarfile's data filter)")
    try:
        with tarfile.open(model_tar_gz, mode="r:*") as tar:
            tar.extractall(dest, filter="data")
    except tarfile.FilterError as error:
        for child in dest.iterdir():
            if child.is_dir() and not child.is_symlink():
                _remove_tree(child)
            else:
                child.unlink()
        raise ValueError(f"{model_tar_gz}: {error}") from error
    for directory, subdirectories, files in os.walk(dest):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                executable = os.stat(path).st_mode & 0o111
                os.chmod(path, 0o755 if executable else 0o644)
        for name in subdirectories:
            os.chmod(os.path.join(directory, name), 0o755)
    return dest


def sagemaker_environment(
    model_environment: Mapping[str, str] | None = None, *, port: int = SAGEMAKER_PORT
) -> dict[str, str]:
    """The environment SageMaker gives a hosting container: the Model's Environment, plus
    SAGEMAKER_BIND_TO_PORT (as for containers in an inference pipeline) so that a container
    sharing the host's network listens on a free port instead of 8080."""
    environment = dict(model_environment or {})
    environment["SAGEMAKER_BIND_TO_PORT"] = str(port)
    return environment


def run_sagemaker_container(
    runtime: ContainerRuntime,
    image: UnpackedImage,
    *,
    model_dir: Path | None,
    port: int,
    log_path: Path,
    model_environment: Mapping[str, str] | None = None,
) -> Container:
    """`docker run <image> serve` as SageMaker hosting does it: the image's Entrypoint with
    "serve" for Cmd, the model read-only at /opt/ml/model, SIGTERM then SIGKILL after 30 s."""
    mounts = [Mount(Path(model_dir), SAGEMAKER_MODEL_DIR)] if model_dir is not None else []
    return runtime.run(
        image,
        command=SAGEMAKER_SERVE_ARGS,
        env=sagemaker_environment(model_environment, port=port),
        mounts=mounts,
        log_path=log_path,
        stop_timeout=SAGEMAKER_STOP_TIMEOUT_S,
    )
