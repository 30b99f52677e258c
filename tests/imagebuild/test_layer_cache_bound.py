"""The layer cache's size bound: least recently used entries go, never those a build uses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from qa_operator.imagebuild.cache import DEFAULT_MAX_BYTES, BuildCache, default_max_bytes
from qa_operator.registry.layers import Layer

KIB = 1024


def store(cache: BuildCache, key: str, size: int) -> None:
    """A fake layer of `size` bytes stored under `key`."""
    with cache.workdir("fake") as work:
        path = work / "layer.tar.gz"
        data = os.urandom(size)
        path.write_bytes(data)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        cache.store_layer(key, Layer(path, digest, digest, size), {"name": key})


def age(cache: BuildCache, key: str, seconds_ago: float) -> None:
    when = os.stat(cache.root / "layers" / key).st_mtime - seconds_ago
    os.utime(cache.root / "layers" / key, (when, when))


def keys(root: Path) -> list[str]:
    return sorted(entry.name for entry in (root / "layers").iterdir())


def test_the_least_recently_used_layers_go_once_the_bound_is_passed(tmp_path):
    # Three builds, one layer each, in a cache that holds about two layers.
    for number, key in enumerate(["old", "middle", "recent"]):
        build = BuildCache(tmp_path, max_bytes=9 * KIB, keep_recent_s=0)
        store(build, key, 4 * KIB)
        age(build, key, 100 * (3 - number))

    assert keys(tmp_path) == ["middle", "recent"]
    assert list((tmp_path / "tmp").iterdir()) == []  # evicted entries are removed, not parked


def test_a_hit_renews_an_entry(tmp_path):
    first = BuildCache(tmp_path, max_bytes=9 * KIB, keep_recent_s=0)
    store(first, "a", 4 * KIB)
    store(first, "b", 4 * KIB)
    age(first, "a", 200)
    age(first, "b", 100)

    reader = BuildCache(tmp_path, max_bytes=9 * KIB, keep_recent_s=0)
    assert reader.layer("a") is not None  # a hit: "a" is now the most recently used

    store(BuildCache(tmp_path, max_bytes=9 * KIB, keep_recent_s=0), "c", 4 * KIB)
    assert keys(tmp_path) == ["a", "c"]


def test_layers_the_build_uses_are_kept_over_the_bound(tmp_path):
    build = BuildCache(tmp_path, max_bytes=5 * KIB, keep_recent_s=0)
    store(build, "torch", 4 * KIB)
    age(build, "torch", 1000)
    store(build, "app", 4 * KIB)  # over the bound, but both are this build's layers
    assert keys(tmp_path) == ["app", "torch"]

    later = BuildCache(tmp_path, max_bytes=5 * KIB, keep_recent_s=0)
    assert later.layer("torch") is not None
    store(later, "app2", 2 * KIB)
    assert keys(tmp_path) == ["app2", "torch"]  # the just-stored and the just-used stay


def test_entries_another_build_used_recently_are_kept(tmp_path):
    other = BuildCache(tmp_path, max_bytes=5 * KIB)
    store(other, "theirs", 4 * KIB)
    store(BuildCache(tmp_path, max_bytes=5 * KIB), "mine", 4 * KIB)
    assert keys(tmp_path) == ["mine", "theirs"]

    age(other, "theirs", 2 * 3600)
    store(BuildCache(tmp_path, max_bytes=5 * KIB), "next", KIB)
    assert keys(tmp_path) == ["mine", "next"]


def test_the_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("QA_OPERATOR_BUILD_CACHE_MAX_GB", raising=False)
    assert default_max_bytes() == DEFAULT_MAX_BYTES == 20 * 1024**3
    monkeypatch.setenv("QA_OPERATOR_BUILD_CACHE_MAX_GB", "0.5")
    assert default_max_bytes() == 512 * 1024**2
    monkeypatch.setenv("QA_OPERATOR_BUILD_CACHE_MAX_GB", "inf")
    assert default_max_bytes() == float("inf")
    monkeypatch.setenv("QA_OPERATOR_BUILD_CACHE_MAX_GB", "lots")
    with pytest.raises(ValueError, match="not a number"):
        default_max_bytes()
