"""A Debian bookworm image with CPython 3.11, built without Docker and without running the target.

apt resolves and downloads the packages against an empty dpkg status, so every dependency comes
along; then the packages' data archives are merged into one layer in Python. No maintainer script
runs, so what those scripts (and debootstrap) would have made is written here instead: the
merged-/usr links, /etc/passwd and /etc/group, the CA bundle, /etc/localtime. The dynamic linker
needs no ld.so.cache: Debian's glibc searches the multiarch directories by default.

The layer is reproducible (sorted entries, mtime 0, uid/gid 0, gzip header mtime 0): the same
package versions give the same digest, and the built layer is cached under a key made of those
versions, so a second build is a lookup and a second push uploads nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import marshal
import os
import platform
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from devstack.cache import cache_dir as default_cache_dir
from qa_operator.registry.client import DOCKER_MANIFEST, RegistryClient, sha256_digest
from qa_operator.registry.layers import GZIP_LEVEL, HashingWriter, Layer

DEFAULT_PACKAGES = ("python3.11", "ca-certificates", "libgomp1", "libstdc++6", "tzdata")
DEFAULT_TAG = "bookworm-python3.11"
SUITE = "bookworm"
PYTHON = "/usr/bin/python3.11"
CREATED = "1970-01-01T00:00:00Z"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Part of the layer cache key: bump it whenever the way the layer is assembled changes.
_LAYOUT_VERSION = 1
# bookworm is merged-/usr: these are links into /usr, and packages' files under them move there.
_MERGED_USR = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
# Left out as Debian's slim images do (dpkg path-exclude), except the licences.
_EXCLUDED_PREFIXES = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/locale/",
    "usr/share/lintian/",
)
_KEPT_DOCS = re.compile(r"usr/share/doc/[^/]+/copyright")
_STANDARD_DIRS = {
    "dev": 0o755,
    "proc": 0o555,
    "sys": 0o555,
    "run": 0o755,
    "tmp": 0o1777,
    "var/tmp": 0o1777,
    "root": 0o700,
    "home": 0o755,
    "etc": 0o755,
}
_GENERATED_FILES = {
    "etc/passwd": (
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    ),
    "etc/group": "root:x:0:\nnogroup:x:65534:\n",
    "etc/nsswitch.conf": (
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
        "networks: files\nprotocols: files\nservices: files\n"
    ),
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}


class AptError(RuntimeError):
    """apt-get failed: the message carries its output."""


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    architecture: str

    @property
    def pin(self) -> str:
        return f"{self.name}={self.version}"

    @property
    def archive_name(self) -> str:
        """The file name apt gives the downloaded .deb (an epoch's colon is escaped)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


@dataclass(frozen=True)
class BuiltBase:
    """The base image's single layer, built or found in the cache."""

    layer: Layer
    packages: tuple[str, ...]  # sorted name=version
    from_cache: bool


@dataclass(frozen=True)
class DebianBase:
    """The base image as pushed."""

    reference: str  # host/repository@sha256:...
    repository: str
    tag: str
    digest: str  # manifest digest
    python: str
    packages: tuple[str, ...]  # sorted name=version
    layer_digest: str
    diff_id: str
    layer_size: int
    bytes_uploaded: int  # 0 when the registry already had everything
    built_from_cache: bool


# -- apt ------------------------------------------------------------------------------------------


class _Apt:
    """apt-get against an empty dpkg status, with our own cache; the host's sources and lists."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lists: Path | None = None  # None: the host's lists
        (root / "archives" / "partial").mkdir(parents=True, exist_ok=True)
        self.status = root / "status"
        self.status.touch()

    @property
    def archives(self) -> Path:
        return self.root / "archives"

    def _options(self) -> list[str]:
        options = {
            "Dir::State::status": str(self.status),
            "Dir::Cache": str(self.root),
            "Dir::Cache::archives": str(self.archives),
            "Debug::NoLocking": "1",
            "APT::Install-Recommends": "false",
            "APT::Get::AllowUnauthenticated": "false",
            "Acquire::Retries": "3",
        }
        if os.geteuid() == 0:
            options["APT::Sandbox::User"] = "root"  # _apt may not reach our cache directory
        if self.lists is not None:
            options["Dir::State::Lists"] = str(self.lists)
        return [f"-o{key}={value}" for key, value in options.items()]

    def _run(self, *args: str) -> str:
        command = ["apt-get", "-qq", *self._options(), *args]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()[-3000:]
            what = " ".join(args[:3])
            raise AptError(f"apt-get {what} ... failed ({result.returncode}):\n{output}")
        return result.stdout

    def use_private_lists(self) -> None:
        """Fetch the package lists into our own directory (the host's may be stale or absent)."""
        self.lists = self.root / "lists"
        (self.lists / "partial").mkdir(parents=True, exist_ok=True)
        self._run("update")

    def _lists_fingerprint(self) -> str:
        """Changes whenever the package lists do: name, size and mtime of every list file."""
        lists = self.lists
        if lists is None:
            shell = subprocess.run(
                ["apt-config", "shell", "LISTS", "Dir::State::lists/d"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            lists = Path(shell.partition("=")[2].strip().strip("'\""))
        listing = sorted(
            f"{entry.name} {entry.stat().st_size} {entry.stat().st_mtime_ns}"
            for entry in os.scandir(lists)
            if entry.is_file() and entry.name != "lock"
        )
        return hashlib.sha256("\n".join([str(lists), *listing]).encode()).hexdigest()

    def resolve(self, packages: Sequence[str]) -> list[DebianPackage]:
        """Every package an install of `packages` into an empty system takes, with versions.

        apt's answer is kept until the package lists change: solving takes seconds, the check
        milliseconds.
        """
        key = hashlib.sha256(
            json.dumps([self._lists_fingerprint(), sorted(packages)]).encode()
        ).hexdigest()[:32]
        remembered = self.root / "resolved" / f"{key}.json"
        if remembered.is_file():
            return [DebianPackage(*fields) for fields in json.loads(remembered.read_text())]
        output = self._run("install", "--simulate", *packages)
        found = [
            DebianPackage(match[1], match[2], match[3])
            for match in re.finditer(r"^Inst (\S+) \((\S+) .*\[(\S+)\]\)", output, re.MULTILINE)
        ]
        if not found:
            raise AptError(f"apt-get resolved nothing for {packages}:\n{output[-2000:]}")
        found.sort(key=lambda package: package.name)
        remembered.parent.mkdir(exist_ok=True)
        staging = remembered.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps([[p.name, p.version, p.architecture] for p in found]))
        staging.replace(remembered)
        return found

    def download(self, packages: Sequence[DebianPackage]) -> list[Path]:
        self._run("install", "--download-only", "--yes", *(p.pin for p in packages))
        paths = [self.archives / p.archive_name for p in packages]
        missing = [path.name for path in paths if not path.is_file()]
        if missing:
            raise AptError(f"apt-get did not leave {missing} in {self.archives}")
        return paths


def _check_host() -> None:
    if shutil.which("apt-get") is None:
        raise RuntimeError("building the Debian base needs apt-get (a Debian bookworm host)")
    if platform.machine() != "x86_64":
        raise RuntimeError(f"the base image is amd64; this host is {platform.machine()}")
    release = Path("/etc/os-release")
    text = release.read_text() if release.exists() else ""
    codename = re.search(r"^VERSION_CODENAME=\"?(\w+)", text, re.MULTILINE)
    if codename is None or codename[1] != SUITE:
        found = codename[1] if codename else "unknown"
        raise RuntimeError(
            f"building the Debian base uses the host's apt sources, which must be Debian {SUITE}; "
            f"this host is {found}"
        )


# -- .deb files -----------------------------------------------------------------------------------


def _ar_members(data: bytes) -> Iterator[tuple[str, bytes]]:
    if not data.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    offset = 8
    while offset + 60 <= len(data):
        header = data[offset : offset + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        yield name, data[offset + 60 : offset + 60 + size]
        offset += 60 + size + size % 2


def _decompress(name: str, data: bytes) -> bytes:
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".tar"):
        return data
    if name.endswith(".zst") and shutil.which("zstd"):
        return subprocess.run(["zstd", "-dc"], input=data, capture_output=True, check=True).stdout
    raise ValueError(f"{name}: unsupported compression (install zstd for .zst)")


def _read_deb(path: Path) -> tuple[DebianPackage, bytes]:
    """The package's identity (from its control file) and its uncompressed data tar."""
    control: bytes | None = None
    data: bytes | None = None
    for name, body in _ar_members(path.read_bytes()):
        if name.startswith("control.tar"):
            with tarfile.open(fileobj=io.BytesIO(_decompress(name, body))) as tar:
                member = tar.extractfile("./control")
                assert member is not None
                control = member.read()
        elif name.startswith("data.tar"):
            data = _decompress(name, body)
    if control is None or data is None:
        raise ValueError(f"{path}: not a Debian package (no control or data archive)")
    fields = dict(re.findall(r"^(\w[\w-]*): *(.*)$", control.decode(), re.MULTILINE))
    package = DebianPackage(fields["Package"], fields["Version"], fields["Architecture"])
    return package, data


# -- the root filesystem ----------------------------------------------------------------------


@dataclass
class _Entry:
    kind: Literal["dir", "file", "symlink", "hardlink"]
    mode: int
    data: bytes = b""
    target: str = ""  # a symlink's target as written; a hardlink's image path


def _image_path(archive_name: str) -> str | None:
    """Where a package's file goes in the merged-/usr image, or None for the archive's root."""
    parts = [part for part in archive_name.split("/") if part not in ("", ".")]
    if not parts:
        return None
    if ".." in parts:
        raise ValueError(f"{archive_name!r} leaves the root")
    if parts[0] in _MERGED_USR:
        parts[0] = _MERGED_USR[parts[0]]
    return "/".join(parts)


def _relocated_link(archive_name: str, image_path: str, target: str) -> str:
    """A relative symlink moved into /usr, re-aimed so that it reaches the same file."""
    if target.startswith("/"):
        return target
    original = "/" + "/".join(part for part in archive_name.split("/") if part not in ("", "."))
    original_dir = posixpath.dirname(original)
    if original_dir == posixpath.dirname("/" + image_path):
        return target
    aimed = _image_path(posixpath.normpath(posixpath.join(original_dir, target)))
    return posixpath.relpath("/" + (aimed or ""), posixpath.dirname("/" + image_path))


def _excluded(path: str) -> bool:
    if _KEPT_DOCS.fullmatch(path):
        return False
    return any((path + "/").startswith(prefix) for prefix in _EXCLUDED_PREFIXES)


def _add_package(entries: dict[str, _Entry], data_tar: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(data_tar)) as tar:
        for member in tar:
            path = _image_path(member.name)
            if path is None:
                continue
            mode = member.mode & 0o7777
            if member.isdir():
                entries[path] = _Entry("dir", mode)
            elif member.isreg():
                handle = tar.extractfile(member)
                assert handle is not None
                entries[path] = _Entry("file", mode, data=handle.read())
            elif member.issym():
                target = _relocated_link(member.name, path, member.linkname)
                entries[path] = _Entry("symlink", 0o777, target=target)
            elif member.islnk():
                target_path = _image_path(member.linkname)
                if target_path is None:
                    raise ValueError(f"{member.name}: hard link to the root")
                entries[path] = _Entry("hardlink", mode, target=target_path)
            else:
                raise ValueError(f"{member.name}: device files and fifos are not supported")


def _settle_hardlinks(entries: dict[str, _Entry], keep: Callable[[str], bool]) -> None:
    """Make the first name (in layer order) of each hard-linked group the regular file.

    The layer is written sorted, and a hard link must come after the file it names; files left
    out (documentation) hand their content to the first link that stays.
    """
    groups: dict[str, list[str]] = {}
    for path, entry in entries.items():
        if entry.kind == "hardlink":
            groups.setdefault(entry.target, []).append(path)
    for source_path, links in groups.items():
        source = entries.get(source_path)
        if source is None or source.kind != "file":
            raise ValueError(f"hard links {links} name {source_path!r}, not a regular file")
        names = sorted(name for name in (source_path, *links) if keep(name))
        if not names:
            continue
        entries[names[0]] = _Entry("file", source.mode, data=source.data)
        for name in names[1:]:
            entries[name] = _Entry("hardlink", source.mode, target=names[0])


def _add_generated(entries: dict[str, _Entry]) -> None:
    """What maintainer scripts and debootstrap would have made."""
    for link, target in _MERGED_USR.items():
        entries.setdefault(target, _Entry("dir", 0o755))
        entries[link] = _Entry("symlink", 0o777, target=target)
    for directory, mode in _STANDARD_DIRS.items():
        entries[directory] = _Entry("dir", mode)
    for path, text in _GENERATED_FILES.items():
        entries[path] = _Entry("file", 0o644, data=text.encode())
    certificates = sorted(
        path
        for path, entry in entries.items()
        if path.startswith("usr/share/ca-certificates/") and path.endswith(".crt")
    )
    if certificates:  # update-ca-certificates, as ca-certificates' postinst runs it
        names = [path.removeprefix("usr/share/ca-certificates/") for path in certificates]
        entries["etc/ca-certificates.conf"] = _Entry(
            "file", 0o644, data=("".join(name + "\n" for name in names)).encode()
        )
        bundle = b"".join(
            entries[path].data if entries[path].data.endswith(b"\n") else entries[path].data + b"\n"
            for path in certificates
        )
        entries["etc/ssl/certs/ca-certificates.crt"] = _Entry("file", 0o644, data=bundle)
    if "usr/share/zoneinfo/Etc/UTC" in entries:  # tzdata's postinst, answering "UTC"
        entries["etc/localtime"] = _Entry("symlink", 0o777, target="/usr/share/zoneinfo/Etc/UTC")
        entries["etc/timezone"] = _Entry("file", 0o644, data=b"Etc/UTC\n")
    if "usr/bin/python3.11" in entries:  # what python3-minimal would add, without its weight
        entries.setdefault("usr/bin/python3", _Entry("symlink", 0o777, target="python3.11"))


# Runs in a fresh isolated interpreter: marshal's output can depend on what else a process has
# loaded, and the layer must depend on nothing but the sources.
_COMPILER = """
import importlib.util, marshal, sys
sources = marshal.loads(sys.stdin.buffer.read())
header = importlib.util.MAGIC_NUMBER + (3).to_bytes(4, "little")  # hash-based, checked
compiled = {}
for path in sorted(sources):
    try:
        code = compile(sources[path], "/" + path, "exec", dont_inherit=True, optimize=0)
    except (SyntaxError, ValueError):
        continue
    compiled[path] = header + importlib.util.source_hash(sources[path]) + marshal.dumps(code)
sys.stdout.buffer.write(marshal.dumps(compiled))
"""


def _bytecode_tag() -> str:
    """The bytecode format the host can write for the image's CPython 3.11, or "none"."""
    if sys.version_info[:2] != (3, 11):
        return "none"
    import importlib.util

    return importlib.util.MAGIC_NUMBER.hex()


def _add_bytecode(entries: dict[str, _Entry]) -> None:
    """The standard library byte-compiled, as python3.11's postinst would leave it.

    The root is read-only, so without these every start compiles what it imports again (about
    a second for asyncio, email, json, ssl). The host's CPython 3.11 writes them (one bytecode
    format across 3.11.x); the target's interpreter never runs. Hash-checked pycs hold no
    timestamps, and stay correct if a later layer edits a source.
    """
    if _bytecode_tag() == "none":
        return
    sources = {
        path: entry.data
        for path, entry in entries.items()
        if entry.kind == "file" and path.startswith("usr/lib/python3.11/") and path.endswith(".py")
    }
    if not sources:
        return
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _COMPILER],
        input=marshal.dumps(sources),
        capture_output=True,
        check=True,
    )
    compiled: dict[str, bytes] = marshal.loads(result.stdout)
    for path, pyc in compiled.items():
        directory, name = posixpath.split(path)
        pyc_path = f"{directory}/__pycache__/{name.removesuffix('.py')}.cpython-311.pyc"
        entries[pyc_path] = _Entry("file", 0o644, data=pyc)


def _add_missing_parents(entries: dict[str, _Entry]) -> None:
    for path in list(entries):
        parent = posixpath.dirname(path)
        while parent:
            existing = entries.get(parent)
            if existing is None:
                entries[parent] = _Entry("dir", 0o755)
            elif existing.kind != "dir":
                raise ValueError(f"{path}: its parent {parent} is a {existing.kind}")
            parent = posixpath.dirname(parent)


def _tarinfo(path: str, entry: _Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
    elif entry.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = entry.target
    else:
        info.size = len(entry.data)
    return info


def _write_layer(entries: dict[str, _Entry], out_path: Path) -> Layer:
    with out_path.open("wb") as raw:
        compressed = HashingWriter(raw)
        gz_target: Any = compressed
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=gz_target, mtime=0, compresslevel=GZIP_LEVEL
        ) as gz:
            uncompressed = HashingWriter(gz)
            tar_target: Any = uncompressed
            with tarfile.open(fileobj=tar_target, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path in sorted(entries):
                    entry = entries[path]
                    content = io.BytesIO(entry.data) if entry.kind == "file" else None
                    tar.addfile(_tarinfo(path, entry), content)
    return Layer(
        path=out_path,
        digest="sha256:" + compressed.sha.hexdigest(),
        diff_id="sha256:" + uncompressed.sha.hexdigest(),
        size=compressed.size,
    )


def build_rootfs_layer(debs: Sequence[Path], out_path: Path) -> tuple[Layer, list[DebianPackage]]:
    """Merge the packages' files into one reproducible layer at `out_path` (no script runs)."""
    read = sorted((_read_deb(Path(deb)) for deb in debs), key=lambda item: item[0].name)
    entries: dict[str, _Entry] = {}
    for _package, data in read:
        _add_package(entries, data)
    _settle_hardlinks(entries, keep=lambda path: not _excluded(path))
    entries = {path: entry for path, entry in entries.items() if not _excluded(path)}
    _add_generated(entries)
    _add_bytecode(entries)
    _add_missing_parents(entries)
    return _write_layer(entries, out_path), [package for package, _ in read]


# -- the cached build -----------------------------------------------------------------------------


def _cache_key(packages: Sequence[DebianPackage]) -> str:
    pins = sorted(f"{p.pin}:{p.architecture}" for p in packages)
    document = json.dumps(
        {"layout": _LAYOUT_VERSION, "bytecode": _bytecode_tag(), "packages": pins}, sort_keys=True
    )
    return hashlib.sha256(document.encode()).hexdigest()[:32]


def _load_cached(entry_dir: Path) -> BuiltBase | None:
    meta_path = entry_dir / "meta.json"
    layer_path = entry_dir / "layer.tar.gz"
    if not meta_path.is_file() or not layer_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if layer_path.stat().st_size != meta["size"]:
        return None
    layer = Layer(
        path=layer_path, digest=meta["digest"], diff_id=meta["diff_id"], size=meta["size"]
    )
    return BuiltBase(layer=layer, packages=tuple(meta["packages"]), from_cache=True)


def _store(entry_dir: Path, debs: Sequence[Path]) -> BuiltBase:
    entry_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry_dir.name}-", dir=entry_dir.parent))
    try:
        layer, packages = build_rootfs_layer(debs, staging / "layer.tar.gz")
        pins = sorted(p.pin for p in packages)
        meta = {"digest": layer.digest, "diff_id": layer.diff_id, "size": layer.size}
        (staging / "meta.json").write_text(json.dumps({**meta, "packages": pins}, indent=2))
        try:
            staging.rename(entry_dir)
        except OSError:  # another build got there first: same packages, same layer
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    cached = _load_cached(entry_dir)
    assert cached is not None
    return BuiltBase(layer=cached.layer, packages=cached.packages, from_cache=False)


def fetch_packages(
    packages: Sequence[str], *, cache_dir: Path | None = None
) -> tuple[list[DebianPackage], list[Path]]:
    """Resolve `packages` (with their dependencies) and download the .deb files (apt keeps
    them under the cache directory: a second call downloads nothing)."""
    _check_host()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir("debian-base")
    apt = _Apt(root / "apt")
    try:
        resolved = apt.resolve(packages)
        return resolved, apt.download(resolved)
    except AptError:
        apt.use_private_lists()
        resolved = apt.resolve(packages)
        return resolved, apt.download(resolved)


def build_debian_python_base(
    packages: Sequence[str] = DEFAULT_PACKAGES, *, cache_dir: Path | None = None
) -> BuiltBase:
    """The base layer for `packages` and their dependencies: from the cache, or built into it.

    The host's package lists are tried first; when apt cannot resolve or fetch with them
    (stale or missing lists), it fetches fresh lists into the cache directory and tries again.
    """
    _check_host()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir("debian-base")
    apt = _Apt(root / "apt")
    for attempt in range(2):
        try:
            resolved = apt.resolve(packages)
            entry_dir = root / "layers" / _cache_key(resolved)
            cached = _load_cached(entry_dir)
            if cached is not None:
                return cached
            return _store(entry_dir, apt.download(resolved))
        except AptError:
            if attempt == 1:
                raise
            apt.use_private_lists()
    raise AssertionError("unreachable")  # pragma: no cover


# -- the image ------------------------------------------------------------------------------------


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def image_config(built: BuiltBase) -> dict[str, Any]:
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": CREATED,
        "config": {"Env": [f"PATH={PATH}", "LANG=C.UTF-8"], "Cmd": ["python3.11"]},
        "rootfs": {"type": "layers", "diff_ids": [built.layer.diff_id]},
        "history": [
            {
                "created": CREATED,
                "created_by": (
                    f"devstack.debian_base: {len(built.packages)} Debian {SUITE} packages "
                    "unpacked without maintainer scripts"
                ),
                "comment": " ".join(built.packages),
            }
        ],
    }


def push_debian_python_base(
    client: RegistryClient,
    repository: str,
    *,
    tag: str = DEFAULT_TAG,
    cache_dir: Path | None = None,
    packages: Sequence[str] = DEFAULT_PACKAGES,
) -> DebianBase:
    """Build (or find) the base and push it as a Docker v2 schema 2 image, checking before
    every write: a registry that has it already receives nothing."""
    built = build_debian_python_base(packages, cache_dir=cache_dir)
    config_body = _canonical(image_config(built))
    config_digest = sha256_digest(config_body)
    manifest_body = _canonical(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {
                "mediaType": DOCKER_CONFIG,
                "digest": config_digest,
                "size": len(config_body),
            },
            "layers": [
                {
                    "mediaType": DOCKER_LAYER,
                    "digest": built.layer.digest,
                    "size": built.layer.size,
                }
            ],
        }
    )
    digest = sha256_digest(manifest_body)
    uploaded_before = client.bytes_uploaded
    if not client.blob_exists(repository, built.layer.digest):
        with built.layer.open() as handle:
            client.upload_blob(repository, built.layer.digest, handle, built.layer.size)
    if not client.blob_exists(repository, config_digest):
        client.upload_blob(repository, config_digest, config_body)
    if client.manifest_digest(repository, tag) != digest:
        client.put_manifest(repository, tag, manifest_body, DOCKER_MANIFEST)
    return DebianBase(
        reference=f"{client.host}/{repository}@{digest}",
        repository=repository,
        tag=tag,
        digest=digest,
        python=PYTHON,
        packages=built.packages,
        layer_digest=built.layer.digest,
        diff_id=built.layer.diff_id,
        layer_size=built.layer.size,
        bytes_uploaded=client.bytes_uploaded - uploaded_before,
        built_from_cache=built.from_cache,
    )
