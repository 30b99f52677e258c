"""The rootfs cache: images on cached images or layer chains reuse their unpacked layers; the
cache is bounded; leftovers of dead pulls and evictions go, live ones stay."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack_images import ImagePusher, Member, PushedImage, tar_bytes

from devstack.containers import (
    DEFAULT_MAX_BYTES,
    ContainerError,
    ContainerRuntime,
    UnpackedImage,
    _remove_tree,
    chain_id,
    default_max_bytes,
)
from qa_operator.registry.client import RegistryClient, sha256_digest

KIB = 1024


def unique_repository() -> str:
    return f"devstack/cache-{secrets.token_hex(4)}"


def pull(runtime: ContainerRuntime, client: RegistryClient, image: PushedImage) -> UnpackedImage:
    return runtime.pull(image.reference(client.host), client=client)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under `root`: (inode, mode, content or link target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        stat = path.lstat()
        if path.is_symlink():
            content = os.readlink(path).encode()
        elif path.is_file():
            content = path.read_bytes()
        else:
            content = b""
        found[path.relative_to(root).as_posix()] = (stat.st_ino, stat.st_mode, content)
    return found


BASE_LAYER = tar_bytes(
    [
        Member("etc/", kind="dir", mode=0o755),
        Member("etc/keep", b"kept\n"),
        Member("etc/changed", b"base version\n"),
        Member("etc/gone", b"whited out above\n"),
        Member("etc/link", kind="symlink", target="keep"),
        Member("opt/app/", kind="dir", mode=0o750),
        Member("opt/app/old", b"old\n"),
        Member("bin/tool", b"#!/bin/sh\n", mode=0o4755),
    ]
)


@pytest.mark.e2e
def test_an_image_on_a_cached_image_unpacks_only_its_own_layer(tmp_path, pusher: ImagePusher):
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=float("inf"))
    repository = unique_repository()
    base_image = pusher.push(repository, [BASE_LAYER])
    base = pull(runtime, pusher.client, base_image)
    assert base.layers_applied == 1 and base.based_on is None
    before = snapshot(base.rootfs)

    upper = tar_bytes(
        [
            Member("etc/changed", b"derived version\n"),
            Member("etc/.wh.gone"),
            Member("opt/app/.wh..wh..opq"),
            Member("opt/app/new", b"new\n"),
            Member("etc/hard", kind="hardlink", target="etc/keep"),
        ]
    )
    derived_image = pusher.push(repository, [upper], base_digest=base_image.digest)
    derived = pull(runtime, pusher.client, derived_image)

    assert derived.layers_applied == 1 and derived.based_on == base.digest
    root = derived.rootfs
    assert (root / "etc/keep").stat().st_ino == (base.rootfs / "etc/keep").stat().st_ino
    assert (root / "etc/hard").stat().st_ino == (base.rootfs / "etc/keep").stat().st_ino
    assert (root / "etc/changed").read_text() == "derived version\n"
    assert (root / "etc/changed").stat().st_ino != (base.rootfs / "etc/changed").stat().st_ino
    assert not (root / "etc/gone").exists()
    assert sorted(p.name for p in (root / "opt/app").iterdir()) == ["new"]
    assert os.readlink(root / "etc/link") == "keep"
    assert (root / "opt/app").stat().st_mode & 0o7777 == 0o750
    assert (root / "bin/tool").stat().st_mode & 0o7777 == 0o4755
    assert snapshot(base.rootfs) == before  # the base's tree and inodes are untouched
    assert (base.rootfs / "etc/changed").read_text() == "base version\n"
    assert chains(runtime) == []  # the base image holds the derived image's parent chain

    again = runtime.pull(derived_image.reference(pusher.client.host), client=pusher.client)
    assert again.from_cache and again.layers_applied == 0


@pytest.mark.e2e
def test_an_unrelated_image_unpacks_every_layer(tmp_path, pusher: ImagePusher):
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=float("inf"))
    pull(runtime, pusher.client, pusher.push(unique_repository(), [BASE_LAYER]))
    other = pusher.push(unique_repository(), [tar_bytes([Member("x", b"x")]), BASE_LAYER])
    image = pull(runtime, pusher.client, other)
    assert image.layers_applied == 2 and image.based_on is None


# -- layer chains: the serving image's code change ------------------------------------------------

TORCH_LAYER = tar_bytes(
    [
        Member("usr/", kind="dir", mode=0o755),
        Member("usr/lib/torch/", kind="dir", mode=0o755),
        Member("usr/lib/torch/libtorch.so", secrets.token_bytes(4096), mode=0o755),
        Member("usr/lib/torch/version", b"2.x\n"),
    ]
)
DEPENDENCIES_LAYER = tar_bytes(
    [
        Member("usr/lib/site/", kind="dir", mode=0o755),
        Member("usr/lib/site/dependency.py", b"VERSION = 1\n"),
        Member("usr/lib/site/dependency-link", kind="symlink", target="dependency.py"),
    ]
)
APP_V1 = tar_bytes(
    [
        Member("app/", kind="dir", mode=0o755),
        Member("app/main.py", b"print('v1')\n"),
        Member("app/only-v1", b"v1\n"),
        Member("etc/.wh.gone"),  # v1 hides a lower layer's file: v2 must still have it
        Member("usr/lib/site/dependency.py", b"VERSION = 'patched by v1'\n"),
    ]
)
APP_V2 = tar_bytes(
    [
        Member("app/", kind="dir", mode=0o755),
        Member("app/main.py", b"print('v2')\n"),
        Member("app/only-v2", b"v2\n"),
        Member("etc/.wh.keep"),  # v2 hides this one: v1 and the chain must still have it
        Member("usr/lib/torch/.wh..wh..opq"),
        Member("usr/lib/torch/replaced", b"v2's torch\n"),
    ]
)
LOWER = [BASE_LAYER, TORCH_LAYER, DEPENDENCIES_LAYER]


def chain_entry(runtime: ContainerRuntime, layers: list[bytes]) -> Path:
    key = chain_id([sha256_digest(layer) for layer in layers])
    return runtime.cache_dir / ("chain-" + key.removeprefix("sha256:"))


def chains(runtime: ContainerRuntime) -> list[str]:
    return sorted(entry.name for entry in runtime.cache_dir.glob("chain-*"))


def disk_usage(root: Path) -> int:
    """Bytes of every regular file under `root`, each inode once."""
    seen: dict[int, int] = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            stat = path.lstat()
            seen[stat.st_ino] = stat.st_size
    return sum(seen.values())


@pytest.mark.e2e
def test_a_new_top_layer_is_the_only_layer_applied(tmp_path, pusher: ImagePusher):
    """[base, torch, dependencies, app]: a code change makes a new app layer only. The first
    unpack keeps the parent chain (every layer but the app) as its own entry, the next image
    starts from it; no file of the chain or the first image is written."""
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=float("inf"))
    repository = unique_repository()
    first = pull(runtime, pusher.client, pusher.push(repository, [*LOWER, APP_V1]))
    assert first.layers_applied == 4 and first.based_on is None
    chain = chain_entry(runtime, LOWER)
    assert chains(runtime) == [chain.name]
    chain_root = chain / "rootfs"
    assert (chain_root / "etc/gone").is_file()  # taken before v1's whiteout
    assert not (chain_root / "app").exists()
    assert (chain_root / "usr/lib/site/dependency.py").read_text() == "VERSION = 1\n"
    assert not (first.rootfs / "etc/gone").exists()
    first_before, chain_before = snapshot(first.rootfs), snapshot(chain_root)
    size_before = disk_usage(runtime.cache_dir)

    second = pull(runtime, pusher.client, pusher.push(repository, [*LOWER, APP_V2]))

    assert second.layers_applied == 1
    assert second.based_on == chain_id([sha256_digest(layer) for layer in LOWER])
    root = second.rootfs
    assert (root / "app/main.py").read_text() == "print('v2')\n"
    assert (root / "app/only-v2").is_file() and not (root / "app/only-v1").exists()
    assert (root / "etc/gone").read_text() == "whited out above\n"  # v1's whiteout is v1's
    assert not (root / "etc/keep").exists()  # v2's own whiteout
    assert (root / "usr/lib/site/dependency.py").read_text() == "VERSION = 1\n"
    assert sorted(p.name for p in (root / "usr/lib/torch").iterdir()) == ["replaced"]
    assert os.readlink(root / "usr/lib/site/dependency-link") == "dependency.py"
    assert (root / "bin/tool").stat().st_mode & 0o7777 == 0o4755
    for mount_point in ("dev", "proc", "tmp", "etc/hosts", "etc/resolv.conf"):
        assert (root / mount_point).exists()

    # Nothing of the first image or the chain was written: same inodes, modes, contents.
    assert snapshot(first.rootfs) == first_before
    assert snapshot(chain_root) == chain_before
    assert (first.rootfs / "etc/keep").read_text() == "kept\n"
    assert (first.rootfs / "usr/lib/torch/version").is_file()
    # The lower layers' files are one inode in all three trees; the top layers' are each
    # image's own.
    shared = (root / "etc/changed").stat()
    assert shared.st_ino == (first.rootfs / "etc/changed").stat().st_ino
    assert shared.st_ino == (chain_root / "etc/changed").stat().st_ino
    assert shared.st_nlink == 3
    assert (first.rootfs / "app/only-v1").stat().st_nlink == 1
    assert (root / "app/main.py").stat().st_ino != (first.rootfs / "app/main.py").stat().st_ino
    # The second image costs its own layer's files, config and manifest: about 1.3 KiB (the
    # lower layers, unpacked again, would add 4 KiB of torch alone).
    assert disk_usage(runtime.cache_dir) - size_before < 2 * KIB

    third = pull(runtime, pusher.client, pusher.push(repository, [*LOWER, APP_V2]))
    assert third.from_cache and third.layers_applied == 0
    assert chains(runtime) == [chain.name]  # no second chain for the same layers


@pytest.mark.e2e
def test_a_chain_is_kept_on_the_longest_cached_prefix(tmp_path, pusher: ImagePusher):
    """The base image is cached: the serving image's chain starts from it (two layers applied
    for the chain, one for the app); an image on the chain's first layers only starts from the
    base, and keeps a chain of its own."""
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=float("inf"))
    repository = unique_repository()
    base = pull(runtime, pusher.client, pusher.push(repository, [BASE_LAYER]))
    assert chains(runtime) == []  # one layer: no parent chain
    serving = pull(runtime, pusher.client, pusher.push(repository, [*LOWER, APP_V1]))
    assert serving.layers_applied == 3 and serving.based_on == base.digest
    assert chains(runtime) == [chain_entry(runtime, LOWER).name]

    new_dependencies = tar_bytes([Member("usr/lib/site/dependency.py", b"VERSION = 2\n")])
    other = pull(
        runtime,
        pusher.client,
        pusher.push(repository, [BASE_LAYER, TORCH_LAYER, new_dependencies, APP_V1]),
    )
    assert other.layers_applied == 3 and other.based_on == base.digest
    patched = (other.rootfs / "usr/lib/site/dependency.py").read_text()
    assert patched == "VERSION = 'patched by v1'\n"
    assert len(chains(runtime)) == 2


def age(entry: Path | UnpackedImage, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    directory = entry.rootfs.parent if isinstance(entry, UnpackedImage) else entry
    os.utime(directory / "in-use.lock", (when, when))


def entries(runtime: ContainerRuntime) -> list[str]:
    return sorted(
        "sha256:" + entry.name.removeprefix("chain-") for entry in runtime.cache_dir.iterdir()
    )


def payload(name: str, size: int) -> bytes:
    return tar_bytes([Member(name, secrets.token_bytes(size))])


@pytest.mark.e2e
def test_the_least_recently_used_rootfs_goes_once_the_bound_is_passed(tmp_path, pusher):
    # Each entry: 4 KiB of payload plus its config and manifest (under 1 KiB).
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=10 * KIB, keep_recent_s=0)
    pulled = []
    for number in range(3):
        image = pull(runtime, pusher.client, pusher.push(unique_repository(), [payload("d", 4096)]))
        age(image, 100 * (3 - number))
        pulled.append(image)
    assert entries(runtime) == sorted(image.digest for image in pulled[1:])

    runtime.cached(pulled[1].digest)  # a use: now the third image is the least recent
    pull(runtime, pusher.client, pusher.push(unique_repository(), [payload("d", 4096)]))
    assert pulled[1].digest in entries(runtime) and pulled[2].digest not in entries(runtime)


@pytest.mark.e2e
def test_files_shared_by_hard_links_count_once(tmp_path, pusher):
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=14 * KIB, keep_recent_s=0)
    repository = unique_repository()
    base_image = pusher.push(repository, [payload("big", 8 * KIB)])
    base = pull(runtime, pusher.client, base_image)
    age(base, 300)
    derived = pull(
        runtime,
        pusher.client,
        pusher.push(repository, [payload("small", KIB)], base_digest=base_image.digest),
    )
    age(derived, 200)
    pull(runtime, pusher.client, pusher.push(unique_repository(), [payload("small", KIB)]))
    assert len(entries(runtime)) == 3  # about 12 KiB on disk; 21 if "big" counted twice


@pytest.mark.e2e
def test_a_chain_shared_with_its_images_counts_once(tmp_path, pusher):
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=14 * KIB, keep_recent_s=0)
    repository = unique_repository()
    big = payload("big", 8 * KIB)
    first = pull(runtime, pusher.client, pusher.push(repository, [big, payload("app", KIB)]))
    age(first, 300)
    age(chain_entry(runtime, [big]), 300)
    second = pull(runtime, pusher.client, pusher.push(repository, [big, payload("app", KIB)]))
    assert second.layers_applied == 1
    assert len(entries(runtime)) == 3  # about 10 KiB on disk; 26 if "big" counted thrice


@pytest.mark.e2e
def test_recently_used_entries_stay_over_the_bound(tmp_path, pusher):
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=KIB)
    for _ in range(2):
        pull(runtime, pusher.client, pusher.push(unique_repository(), [payload("d", 4096)]))
    assert len(entries(runtime)) == 2


FAKE_BWRAP = f"""#!{sys.executable}
import json, os, sys, time
fd = int(sys.argv[sys.argv.index("--info-fd") + 1])
os.write(fd, json.dumps({{"child-pid": os.getpid()}}).encode())
os.close(fd)
time.sleep(60)
"""


@pytest.mark.e2e
def test_a_rootfs_a_container_runs_on_is_never_evicted(tmp_path, pusher):
    """The container holds a shared lock on its rootfs (through bubblewrap's inherited file
    descriptor) until it ends; a stand-in for bubblewrap keeps this test fast."""
    bwrap = tmp_path / "bwrap"
    bwrap.write_text(FAKE_BWRAP)
    bwrap.chmod(0o755)
    runtime = ContainerRuntime(
        tmp_path / "rootfs-cache", bwrap=str(bwrap), max_bytes=0, keep_recent_s=0
    )
    running = pull(runtime, pusher.client, pusher.push(unique_repository(), [payload("d", 64)]))
    container = runtime.run(running, command=["serve"], log_path=tmp_path / "container.log")
    try:
        lock = os.open(running.rootfs.parent / "in-use.lock", os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.close(lock)

        idle = pull(runtime, pusher.client, pusher.push(unique_repository(), [payload("d", 64)]))
        assert runtime.evict() == [idle.digest]
        assert entries(runtime) == [running.digest]
    finally:
        container.stop(timeout=5)
    assert runtime.evict() == [running.digest]
    assert list(runtime.cache_dir.iterdir()) == []
    with pytest.raises(ContainerError, match="evicted from the cache: pull it again"):
        runtime.run(running, command=["serve"], log_path=tmp_path / "container.log")


@pytest.mark.e2e
def test_chains_are_evicted_like_images_never_while_in_use(tmp_path, pusher):
    bwrap = tmp_path / "bwrap"
    bwrap.write_text(FAKE_BWRAP)
    bwrap.chmod(0o755)
    runtime = ContainerRuntime(
        tmp_path / "rootfs-cache", bwrap=str(bwrap), max_bytes=0, keep_recent_s=0
    )
    repository = unique_repository()
    lower = payload("lower", 64)
    image = pull(runtime, pusher.client, pusher.push(repository, [lower, payload("app", 64)]))
    chain = chain_entry(runtime, [lower])
    chain_key = "sha256:" + chain.name.removeprefix("chain-")
    assert entries(runtime) == sorted([image.digest, chain_key])  # kept: just made

    container = runtime.run(image, command=["serve"], log_path=tmp_path / "container.log")
    try:
        copying = os.open(chain / "in-use.lock", os.O_RDONLY)
        fcntl.flock(copying, fcntl.LOCK_SH)  # as a pull copying from the chain holds it
        assert runtime.evict() == []
        os.close(copying)
        assert runtime.evict() == [chain_key]
        assert entries(runtime) == [image.digest]
        assert (image.rootfs / "lower").stat().st_nlink == 1  # the image keeps its files
    finally:
        container.stop(timeout=5)
    assert runtime.evict() == [image.digest]
    assert list(runtime.cache_dir.iterdir()) == []

    runtime.max_bytes = float("inf")
    again = pull(runtime, pusher.client, pusher.push(repository, [lower, payload("app", 64)]))
    assert again.layers_applied == 2 and again.based_on is None  # no stale chain is used
    assert chain.is_dir()


def test_the_chain_id_is_the_oci_image_specs():
    first, second, third = (sha256_digest(bytes([n])) for n in range(3))
    assert chain_id([first]) == first
    two = "sha256:" + hashlib.sha256(f"{first} {second}".encode()).hexdigest()
    assert chain_id([first, second]) == two
    assert chain_id([first, second, third]) == (
        "sha256:" + hashlib.sha256(f"{two} {third}".encode()).hexdigest()
    )
    with pytest.raises(ValueError):
        chain_id([])


# -- leftovers and removal ------------------------------------------------------------------------

HOLD_LOCKS = """
import fcntl, os, sys, time
for path in sys.argv[1:]:
    fcntl.flock(os.open(path, os.O_RDONLY | os.O_DIRECTORY), fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(120)
"""


@contextlib.contextmanager
def locked_by_another_process(*paths: Path) -> Iterator[int]:
    """Another process holding a flock on each directory, as a live pull or eviction does."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCKS, *map(str, paths)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


def dead_pid() -> int:
    finished = subprocess.Popen(["true"])
    finished.wait()
    return finished.pid


def test_only_leftovers_of_dead_owners_are_removed(tmp_path):
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=float("inf"))
    cache = runtime.cache_dir
    name = "ab" * 32

    def leftover(dir_name: str, *, hours_old: float = 0) -> Path:
        path = cache / dir_name
        (path / "rootfs/etc").mkdir(parents=True)
        (path / "rootfs/etc/file").write_text("x")
        when = time.time() - hours_old * 3600
        os.utime(path, (when, when))
        return path

    killed_eviction = leftover(f".evicting-{name}-{dead_pid()}")
    killed_pull = leftover(".abababababab-killed", hours_old=2)
    fresh_staging = leftover(".abababababab-fresh")  # maybe between mkdtemp and its flock
    live_pull = leftover(".abababababab-live", hours_old=2)
    locked_eviction = leftover(f".evicting-{name}-{dead_pid()}-x")  # only its lock tells
    with locked_by_another_process(live_pull, locked_eviction) as holder:
        live_eviction = leftover(f".evicting-{name}-{holder}")
        runtime.evict()
        assert killed_eviction.exists() is False and killed_pull.exists() is False
        for path in (fresh_staging, live_pull, locked_eviction, live_eviction):
            assert (path / "rootfs/etc/file").read_text() == "x", path
    runtime.evict()
    assert sorted(path.name for path in cache.iterdir()) == [fresh_staging.name]


NOBODY = 65534


def remove_as_another_user(path: Path) -> None:
    """`_remove_tree` as a user to whom directory modes apply (root ignores them)."""
    if os.geteuid() != 0:
        _remove_tree(path)
        return
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            _remove_tree(path)
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_tree_with_locked_directories_is_removed():
    """Directories without write (files in them cannot be unlinked), read (cannot be listed) or
    search permission: each is given the permission it lacks, and the removal retried."""
    holder = Path(tempfile.mkdtemp())
    try:
        tree = holder / "tree"
        for directory in ("read-only/inner", "unreadable/deeper", "unsearchable"):
            (tree / directory).mkdir(parents=True)
        for file in (
            "read-only/a",
            "read-only/inner/b",
            "unreadable/c",
            "unreadable/deeper/d",
            "unsearchable/e",
        ):
            (tree / file).write_text("x")
        (tree / "read-only/link").symlink_to("a")
        if os.geteuid() == 0:
            for path in (holder, *holder.rglob("*")):
                os.chown(path, NOBODY, NOBODY, follow_symlinks=False)
            holder.chmod(0o755)
        for directory, mode in (
            ("read-only/inner", 0o555),
            ("read-only", 0o555),
            ("unreadable/deeper", 0o000),
            ("unreadable", 0o000),
            ("unsearchable", 0o600),
        ):
            (tree / directory).chmod(mode)

        remove_as_another_user(tree)

        assert list(holder.iterdir()) == []
    finally:
        for path in (holder, *holder.rglob("*")):
            with contextlib.suppress(OSError):
                if not path.is_symlink():
                    path.chmod(0o700)
        _remove_tree(holder)


def test_the_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("QA_OPERATOR_ROOTFS_CACHE_MAX_GB", raising=False)
    assert default_max_bytes() == DEFAULT_MAX_BYTES == 30 * 1024**3
    monkeypatch.setenv("QA_OPERATOR_ROOTFS_CACHE_MAX_GB", "2")
    assert ContainerRuntime(Path("unused")).max_bytes == 2 * 1024**3
    monkeypatch.setenv("QA_OPERATOR_ROOTFS_CACHE_MAX_GB", "inf")
    assert default_max_bytes() == float("inf")
    monkeypatch.setenv("QA_OPERATOR_ROOTFS_CACHE_MAX_GB", "-1")
    with pytest.raises(ValueError, match="negative"):
        default_max_bytes()
