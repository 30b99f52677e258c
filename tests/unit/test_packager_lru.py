"""The package cache's LRU bound: which entries go (pure), and the packager applying it to its
work dir, with packaging stubbed to write a file of a known size."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from qa_operator.artifacts import (
    CacheEntry,
    ModelPackager,
    PreparedPackage,
    choose_victims,
)
from qa_operator.keyed_locks import KeyedLocks
from qa_operator.spec import DeploymentSpec, HuggingFaceSource, parse_spec
from support.stub_packages import s3_spec, write_stub_package


def entry(name: str, mtime: float, inodes: dict[int, int], *, evictable: bool = True) -> CacheEntry:
    return CacheEntry(
        Path(name), name, mtime, {(1, ino): size for ino, size in inodes.items()}, evictable
    )


A = entry("a", 1.0, {1: 40})
B = entry("b", 2.0, {2: 40})
C = entry("c", 3.0, {3: 40})


@pytest.mark.parametrize(
    ("entries", "max_bytes", "victims"),
    [
        pytest.param([A, B, C], 120, [], id="fits"),
        pytest.param([C, B, A], 80, ["a"], id="oldest-first"),
        pytest.param([A, B, C], 40, ["a", "b"], id="until-it-fits"),
        pytest.param([A, B, C], 0, ["a", "b", "c"], id="all-evictable"),
        pytest.param(
            [entry("a", 1.0, {1: 40}, evictable=False), B, C], 40, ["b", "c"], id="pinned-skipped"
        ),
        pytest.param(
            [entry("a", 1.0, {1: 40}, evictable=False), B], 0, ["b"], id="over-when-pinned"
        ),
        # A package hard-links its hub download's weights (inode 9): removing the hub entry
        # frees nothing while the package holds them, so the package goes next.
        pytest.param(
            [entry("hub", 1.0, {9: 100, 1: 1}), entry("pkg", 2.0, {9: 100, 2: 1}), C],
            100,
            ["hub", "pkg"],
            id="shared-inode-counts-once",
        ),
        pytest.param(
            [entry("hub", 1.0, {9: 100}), entry("pkg", 2.0, {9: 100, 2: 1})],
            101,
            [],
            id="shared-inode-not-double-counted",
        ),
    ],
)
def test_choose_victims(entries: list[CacheEntry], max_bytes: int, victims: list[str]) -> None:
    assert [v.key for v in choose_victims(entries, max_bytes)] == victims


class StubPackager(ModelPackager):
    """Packaging writes `size` bytes and a package.json, as the real one does."""

    size = 1000

    def __init__(self, work: Path, **kwargs: Any) -> None:
        kwargs.setdefault("keep_recent_seconds", 0.0)
        super().__init__(work, max_concurrent=2, s3_client=lambda region: None, **kwargs)
        self.packaged: list[str] = []

    def _package(self, spec: DeploymentSpec, region: str, staging: Path) -> PreparedPackage:
        self.packaged.append(staging.name.split(".")[0])
        return write_stub_package(staging, b"x" * self.size)


def age(path: Path, seconds_ago: float) -> None:
    when = path.stat().st_mtime - seconds_ago
    os.utime(path, (when, when))


def test_least_recently_used_packages_go_beyond_the_bound(tmp_path: Path) -> None:
    packager = StubPackager(tmp_path, max_bytes=2500)
    first = packager.prepare(s3_spec("one"), "r")
    second = packager.prepare(s3_spec("two"), "r")
    age(first.package_dir.parent, 100)
    age(second.package_dir.parent, 50)
    packager.prepare(s3_spec("one"), "r")  # served from the cache: now the most recent
    third = packager.prepare(s3_spec("three"), "r")
    assert not second.package_dir.parent.exists()
    assert first.archive.is_file() and third.archive.is_file()
    assert sorted(p.name for p in (tmp_path / "packages").iterdir()) == sorted(
        [packager.key(s3_spec("one")), packager.key(s3_spec("three"))]
    )


def test_the_package_just_prepared_stays_even_above_the_bound(tmp_path: Path) -> None:
    packager = StubPackager(tmp_path, max_bytes=10)
    first = packager.prepare(s3_spec("one"), "r")
    assert first.archive.is_file()
    second = packager.prepare(s3_spec("two"), "r")
    assert second.archive.is_file()
    assert not first.package_dir.exists()


def test_failure_markers_and_recent_entries_are_kept(tmp_path: Path) -> None:
    packager = StubPackager(tmp_path, max_bytes=10, keep_recent_seconds=60.0)
    marker = tmp_path / "packages" / "0123456789abcdef.failed.json"
    marker.parent.mkdir(parents=True)
    marker.write_text("{}" * 100)
    first = packager.prepare(s3_spec("one"), "r")
    packager.prepare(s3_spec("two"), "r")
    assert first.archive.is_file(), "used a moment ago: another reconcile may still upload it"
    age(first.package_dir.parent, 120)
    packager.prepare(s3_spec("three"), "r")
    assert not first.package_dir.exists()
    assert marker.is_file()


def test_a_key_being_prepared_by_another_thread_is_not_evicted(tmp_path: Path) -> None:
    packager = StubPackager(tmp_path, max_bytes=10)
    first = packager.prepare(s3_spec("one"), "r")
    age(first.package_dir.parent, 100)
    with packager._lock_for(packager.key(s3_spec("one"))):
        packager.prepare(s3_spec("two"), "r")
        assert first.archive.is_file()
    packager.prepare(s3_spec("three"), "r")
    assert not first.package_dir.exists()
    assert len(packager._key_locks) == 0, "no lock kept for a key nobody holds"


def test_keyed_locks_exclude_per_key_and_keep_nothing_once_released() -> None:
    locks = KeyedLocks()
    with locks.hold("a") as first:
        assert first
        with locks.hold("a", blocking=False) as second:
            assert not second, "held by the block around it"
        with locks.hold("b", blocking=False) as other:
            assert other, "another key is free"
        assert len(locks) == 1
    assert len(locks) == 0


def test_hub_downloads_are_bounded_with_the_packages_unless_in_use(tmp_path: Path) -> None:
    packager = StubPackager(tmp_path, max_bytes=1500)
    hub = tmp_path / "huggingface"
    old, busy = hub / "models--org--old", hub / "models--org--busy"
    for repo in (old, busy):
        (repo / "blobs").mkdir(parents=True)
        (repo / "blobs" / "weights").write_bytes(b"w" * 1000)
        age(repo, 1000)
    (hub / ".locks").mkdir()
    started, release = threading.Event(), threading.Event()

    source = parse_spec_hf("org/busy").source
    assert isinstance(source, HuggingFaceSource)

    def in_use() -> None:
        with packager._hub_download(source):
            started.set()
            release.wait(10)

    thread = threading.Thread(target=in_use)
    thread.start()
    started.wait(10)
    try:
        packager.prepare(s3_spec("one"), "r")
        assert not old.exists()
        assert busy.is_dir() and (hub / ".locks").is_dir()
    finally:
        release.set()
        thread.join()
    packager.prepare(s3_spec("two"), "r")
    assert not busy.exists()


def test_unbounded_when_max_bytes_is_none(tmp_path: Path) -> None:
    packager = StubPackager(tmp_path, max_bytes=None)
    prepared = [packager.prepare(s3_spec(name), "r") for name in ("one", "two", "three")]
    assert all(p.archive.is_file() for p in prepared)
    assert packager.evict() == []


def parse_spec_hf(model_id: str) -> DeploymentSpec:
    return parse_spec(
        {"model": {"huggingface": {"id": model_id}}, "endpoint": {"instanceType": "ml.m5.large"}}
    )
