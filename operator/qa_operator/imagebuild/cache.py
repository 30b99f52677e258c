"""The layer cache: built layers stored under a key that covers everything they depend on.

A hit skips pip and compression entirely. Entries are written whole or not at all (built in a
temporary directory next to them, then renamed), so a build interrupted half-way leaves no
partial entry and two builds racing for the same key both end up with a complete one.

The layers are bounded by total size (`max_bytes`, default 20 GiB or
$QA_OPERATOR_BUILD_CACHE_MAX_GB): after each store the least recently used entries go (a hit
touches its entry's mtime), never one this cache object used nor one used in the last hour by
another build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa_operator.imagebuild.base import BaseFacts
from qa_operator.imagebuild.imageconfig import canonical_json
from qa_operator.registry.layers import Layer

CACHE_ENV = "QA_OPERATOR_CACHE"
MAX_GB_ENV = "QA_OPERATOR_BUILD_CACHE_MAX_GB"
DEFAULT_MAX_BYTES = 20 * 1024**3
# A concurrent build may look a layer up long before it uploads it (the torch layer builds for
# minutes in between): entries used this recently are kept whatever the bound.
DEFAULT_KEEP_RECENT_S = 3600.0
# Part of every key: bump it when the builder changes what it puts in a layer.
FORMAT_VERSION = 1
_STALE_WORKDIR_S = 24 * 3600

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV)
    return (Path(root) if root else Path.home() / ".cache" / "qa-operator") / "image-build"


def size_limit_from_env(variable: str, default: float) -> float:
    """A cache bound from `variable`, in GiB (`inf`: no bound); `default` bytes when unset."""
    value = os.environ.get(variable, "").strip()
    if not value:
        return default
    try:
        gib = float(value)
    except ValueError:
        raise ValueError(f"{variable}={value!r} is not a number of GiB") from None
    if gib < 0:
        raise ValueError(f"{variable}={value!r} is negative")
    return gib * 1024**3


def default_max_bytes() -> float:
    """$QA_OPERATOR_BUILD_CACHE_MAX_GB in GiB (`inf`: no bound), else 20 GiB."""
    return size_limit_from_env(MAX_GB_ENV, DEFAULT_MAX_BYTES)


def cache_key(inputs: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json({"format": FORMAT_VERSION, **inputs})).hexdigest()


@dataclass(frozen=True)
class CachedLayer:
    layer: Layer
    meta: dict[str, Any]


class BuildCache:
    """<root>/layers/<key>/{layer.tar.gz,meta.json}, <root>/bases/<digest>.json, <root>/tmp."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: float | None = None,
        keep_recent_s: float = DEFAULT_KEEP_RECENT_S,
    ) -> None:
        self.root = Path(root)
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        self.keep_recent_s = keep_recent_s
        self._used: set[str] = set()  # keys this object looked up or stored: its build needs them
        self._layers = self.root / "layers"
        self._bases = self.root / "bases"
        self._tmp = self.root / "tmp"
        for directory in (self._layers, self._bases, self._tmp):
            directory.mkdir(parents=True, exist_ok=True)
        self._remove_stale_workdirs()

    def _remove_stale_workdirs(self) -> None:
        """Workdirs a killed build left behind (a live build's are younger than a day)."""
        now = time.time()
        for entry in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > _STALE_WORKDIR_S:
                    shutil.rmtree(entry, ignore_errors=True)

    @contextlib.contextmanager
    def workdir(self, name: str) -> Iterator[Path]:
        """A scratch directory on the cache's filesystem (so that results move by rename)."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self._tmp))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def layer(self, key: str) -> CachedLayer | None:
        entry = self._layers / key
        try:
            meta = json.loads((entry / "meta.json").read_text())
            path = entry / "layer.tar.gz"
            if path.stat().st_size != meta["size"]:
                raise ValueError("size differs from meta.json")
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("layer cache entry %s is damaged (%s): rebuilding it", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        layer = Layer(path=path, digest=meta["digest"], diff_id=meta["diff_id"], size=meta["size"])
        self._used.add(key)
        with contextlib.suppress(OSError):
            os.utime(entry)  # the LRU order
        return CachedLayer(layer=layer, meta=meta)

    def store_layer(self, key: str, layer: Layer, meta: Mapping[str, Any]) -> CachedLayer:
        """Move `layer`'s file into the cache under `key` (it must be on the cache's filesystem)."""
        staging = Path(tempfile.mkdtemp(prefix="entry-", dir=self._tmp))
        try:
            full_meta = {
                **meta,
                "digest": layer.digest,
                "diff_id": layer.diff_id,
                "size": layer.size,
            }
            os.replace(layer.path, staging / "layer.tar.gz")
            (staging / "meta.json").write_text(json.dumps(full_meta, indent=1, sort_keys=True))
            try:
                os.rename(staging, self._layers / key)
            except OSError:
                if self.layer(key) is None:  # not a racing build's finished entry: a real error
                    raise
                log.info("layer %s was cached by another build meanwhile", key[:12])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        cached = self.layer(key)
        assert cached is not None
        self.evict()
        return cached

    def evict(self) -> list[str]:
        """Remove least recently used layers until they total at most `max_bytes`; the keys
        removed. Kept whatever the bound: what this object used, what was used recently."""
        now = time.time()
        entries: list[tuple[float, str, int]] = []  # (last use, key, bytes)
        total = 0
        for entry in self._layers.iterdir():
            try:
                used = entry.stat().st_mtime
                size = sum(f.stat().st_size for f in entry.iterdir() if f.is_file())
            except OSError:
                continue  # removed meanwhile
            total += size
            entries.append((used, entry.name, size))
        evicted: list[str] = []
        for used, key, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if key in self._used or now - used < self.keep_recent_s:
                continue
            doomed = self._tmp / f"evicted-{key}-{os.getpid()}"
            try:
                os.rename(self._layers / key, doomed)
            except OSError:
                continue  # evicted or renewed by another build meanwhile
            shutil.rmtree(doomed, ignore_errors=True)
            total -= size
            evicted.append(key)
            log.info("layer cache: evicted %s (%d bytes, unused for %.0f s)", key, size, now - used)
        return evicted

    def base_facts(self, manifest_digest: str) -> BaseFacts | None:
        path = self._bases / f"{manifest_digest.replace(':', '-')}.json"
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT_VERSION:
                return None
            return BaseFacts.from_json(data)
        except (OSError, ValueError, KeyError):
            return None

    def store_base_facts(self, manifest_digest: str, facts: BaseFacts) -> None:
        path = self._bases / f"{manifest_digest.replace(':', '-')}.json"
        handle, temporary = tempfile.mkstemp(dir=self._tmp, suffix=".json")
        with os.fdopen(handle, "w") as out:
            json.dump({"format": FORMAT_VERSION, **facts.as_json()}, out)
        os.replace(temporary, path)
