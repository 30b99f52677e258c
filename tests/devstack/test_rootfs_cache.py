"""The rootfs cache: images on cached images reuse their unpacked layers; the cache is bounded."""

from __future__ import annotations

import fcntl
import os
import secrets
import sys
import time
from pathlib import Path

import pytest
from devstack_images import ImagePusher, Member, PushedImage, tar_bytes

from devstack.containers import (
    DEFAULT_MAX_BYTES,
    ContainerError,
    ContainerRuntime,
    UnpackedImage,
    default_max_bytes,
)
from qa_operator.registry.client import RegistryClient

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

    again = runtime.pull(derived_image.reference(pusher.client.host), client=pusher.client)
    assert again.from_cache and again.layers_applied == 0


@pytest.mark.e2e
def test_an_unrelated_image_unpacks_every_layer(tmp_path, pusher: ImagePusher):
    runtime = ContainerRuntime(tmp_path / "rootfs-cache", max_bytes=float("inf"))
    pull(runtime, pusher.client, pusher.push(unique_repository(), [BASE_LAYER]))
    other = pusher.push(unique_repository(), [tar_bytes([Member("x", b"x")]), BASE_LAYER])
    image = pull(runtime, pusher.client, other)
    assert image.layers_applied == 2 and image.based_on is None


def age(image: UnpackedImage, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(image.rootfs.parent / "in-use.lock", (when, when))


def entries(runtime: ContainerRuntime) -> list[str]:
    return sorted("sha256:" + entry.name for entry in runtime.cache_dir.iterdir())


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
