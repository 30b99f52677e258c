"""From a spec's model source to a packaged, archived MLflow model on local disk.

Packaging runs in its own pool of threads (`PackagingJobs`), never in kopf's workers nor on its
event loop, and at most `max_concurrent` at a time: a reconcile that needs a package not built
yet starts (or joins) its source's job and comes back for the result. Results are cached under
the work dir by the source key, so a repeated pass (or a restarted operator on the same volume)
does not fetch or package again. MLflow's half of the work (saving the package, which loads the
model, and fetching MLflow sources) runs in a child process (packaging_process.py).

A source is checked before it is packaged (a QA architecture with a fast tokenizer, or an MLflow
model with the QA signature); a hub model before its weights are fetched, from its config and
tokenizer files alone. A failure that only another source can fix is remembered the same
way, in `<key>.failed.json` beside the packages: later passes raise it again without fetching,
until the spec names another source (a new key) or someone deletes the marker.

Every package carries the operator's serving limits (QA_OPERATOR_SERVING_*), and they are part
of the key unless they are the defaults. The cache is bounded: after a package is prepared, the
least recently used package directories and hub downloads go until the work dir fits
`max_bytes`; serving an entry from the cache marks it used (its mtime).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import shutil
import stat
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa_operator import freshness
from qa_operator.desired import source_key
from qa_operator.errors import OperatorError, RetryableError, TerminalError
from qa_operator.keyed_locks import KeyedLocks
from qa_operator.model import validation
from qa_operator.model.limits import ServingLimits
from qa_operator.packaging_process import InProcess, PackageBuilder, RaisedInChild
from qa_operator.policy import mask_uri
from qa_operator.settings import DEFAULT_WORK_DIR_MAX_BYTES
from qa_operator.spec import DeploymentSpec, HuggingFaceSource, MlflowSource, S3Source

# Exceptions of huggingface_hub and requests, by name so that this module imports neither.
_MISSING_MODEL = {
    "RepositoryNotFoundError",
    "RevisionNotFoundError",
    "GatedRepoError",
    "EntryNotFoundError",
    "MlflowException",
}
# Terminal failures about what the source holds: fetching it again gives the same answer. Others
# (access denied, a missing tracking URI) are cheap to hit and fixed outside the spec: not kept.
_REMEMBERED_REASONS = {"InvalidModel", "ModelNotFound", "PackagingFailed"}
# Another reconcile may still be uploading or building an image from an entry it was just
# handed, after prepare() returned and its key lock was released.
DEFAULT_KEEP_RECENT_SECONDS = 600.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedPackage:
    digest: str  # content digest of the MLflow model directory
    package_dir: Path
    archive: Path
    archive_digest: str


class ModelPackager:
    def __init__(
        self,
        work_dir: Path,
        *,
        max_concurrent: int,
        s3_client: Callable[[str], Any],
        limits: ServingLimits | None = None,
        max_bytes: int | None = DEFAULT_WORK_DIR_MAX_BYTES,
        keep_recent_seconds: float = DEFAULT_KEEP_RECENT_SECONDS,
        hub_endpoint: str | None = None,
        builder: PackageBuilder | None = None,
    ) -> None:
        """`limits`: written into every package built here; `max_bytes`: the bound on packages
        and hub downloads together (None: unbounded); entries used within `keep_recent_seconds`
        are kept even above the bound; `hub_endpoint`: the HuggingFace hub's address (None:
        HF_ENDPOINT, else huggingface.co, as the hub's own tools do); `builder`: where MLflow
        saves packages and fetches MLflow sources (default: this process; the operator uses a
        child process, packaging_process.py)."""
        self._builder = builder or InProcess()
        self._root = work_dir / "packages"
        self._hub = work_dir / "huggingface"
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._s3_client = s3_client
        self._limits = limits
        self._max_bytes = max_bytes
        self._keep_recent_seconds = keep_recent_seconds
        self._hub_endpoint = hub_endpoint
        self._key_locks = KeyedLocks()
        self._guard = threading.Lock()
        self._hub_in_use: Counter[str] = Counter()
        self._evicting = threading.Lock()

    def key(self, spec: DeploymentSpec) -> str:
        """The cache key of the package for `spec` (what the reconciler records as sourceKey)."""
        return source_key(spec, self._limits)

    def hub_commit(self, source: HuggingFaceSource) -> str:
        """The commit `source`'s revision resolves to on the hub now (freshness.py): one cheap
        request, its errors classified as packaging's are."""
        from qa_operator.model import sources

        described = f"huggingface {source.model_id}@{source.revision}"
        try:
            commit = sources.resolve_huggingface_revision(
                source.model_id, source.revision, endpoint=self._hub_endpoint
            )
        except Exception as exc:
            raise _classify(exc, described) from exc
        if not freshness.is_commit(commit):
            raise TerminalError("ModelNotFound", f"the hub resolved {described} to {commit!r}")
        return commit

    def _lock_for(self, key: str, *, blocking: bool = True) -> AbstractContextManager[bool]:
        """Two resources with the same source package it once, not twice at the same time."""
        return self._key_locks.hold(key, blocking=blocking)

    def cached(self, spec: DeploymentSpec) -> PreparedPackage | None:
        """The package for `spec` if the cache has it, without fetching anything; raises what
        cannot be packaged (a remembered failure, a field that does not apply). None while
        another thread prepares it."""
        _check_applicable(spec)
        key = self.key(spec)
        home = self._root / key
        with self._lock_for(key, blocking=False) as acquired:
            if not acquired:
                return None
            cached = self._cached(home)
            if cached is not None:
                _touch(home)
                return cached
            _raise_remembered(self._root / f"{key}.failed.json")
        return None

    def prepare(self, spec: DeploymentSpec, region: str) -> PreparedPackage:
        _check_applicable(spec)
        _check_engine_available(spec)
        key = self.key(spec)
        home = self._root / key
        failure = self._root / f"{key}.failed.json"
        # The key lock also keeps eviction from removing the entry while it is read.
        with self._lock_for(key):
            cached = self._cached(home)
            if cached is not None:
                _touch(home)
                return cached
            _raise_remembered(failure)
            with self._slots:
                prepared = self._prepare(spec, region, home, failure)
        self.evict(keep={key})
        return prepared

    def _prepare(
        self, spec: DeploymentSpec, region: str, home: Path, failure: Path
    ) -> PreparedPackage:
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=home.name + ".", dir=home.parent))
        try:
            prepared = self._package(spec, region, staging)
            shutil.rmtree(home, ignore_errors=True)
            staging.rename(home)
            _touch(home)
        except OperatorError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            _remember(failure, exc, describe_source(spec))
            raise
        except Exception as exc:
            shutil.rmtree(staging, ignore_errors=True)
            error = _classify(exc, describe_source(spec))
            _remember(failure, error, describe_source(spec))
            raise error from exc
        return self._relocated(prepared, staging, home)

    def _package(self, spec: DeploymentSpec, region: str, staging: Path) -> PreparedPackage:
        from qa_operator.model import packaging

        source = spec.source
        if isinstance(source, MlflowSource):
            fetched = self._builder.fetch_mlflow(
                source.model_uri, staging / "source", source.tracking_uri
            )
            _require_valid(spec, _mlflow_model_problem(fetched))
            package = packaging.load_package(fetched)
        else:
            with self._hub_download(source):
                model_dir = self._fetch_checked(spec, source, region, staging)
                try:
                    package = self._builder.build_package(
                        model_dir, staging / "package", spec.inference, self._limits
                    )
                except ValueError as exc:
                    raise TerminalError("InvalidModel", f"cannot package the model: {exc}") from exc
        archive = staging / "model.tar.gz"
        archive_digest = packaging.write_archive(package, archive)
        record = {
            "digest": package.digest,
            "archiveDigest": archive_digest,
            "packageDir": package.path.relative_to(staging).as_posix(),
        }
        (staging / "package.json").write_text(json.dumps(record))
        return PreparedPackage(package.digest, package.path, archive, archive_digest)

    def _fetch_checked(
        self,
        spec: DeploymentSpec,
        source: HuggingFaceSource | S3Source,
        region: str,
        staging: Path,
    ) -> Path:
        """The source's HuggingFace model directory, once it passed the QA checks. A hub model is
        checked on its config and tokenizer files, before its weights (gigabytes) are fetched."""
        from qa_operator.model import sources

        if isinstance(source, S3Source):
            model_dir = sources.fetch_s3(source.uri, staging / "source", self._s3_client(region))
            _require_valid(spec, _huggingface_model_problem(model_dir))
            return model_dir
        # With refresh OnResync, the commit the key holds, not the branch again (it may move).
        revision = freshness.huggingface_commit(spec.source_version) or source.revision
        metadata = sources.fetch_huggingface_metadata(
            source.model_id, revision, self._hub, endpoint=self._hub_endpoint
        )
        _touch(metadata.parents[1])  # <hub>/models--org--name/snapshots/<commit>
        _require_valid(spec, _huggingface_model_problem(metadata))
        # The commit the checked files came from (the snapshot's name), not the branch again.
        return sources.fetch_huggingface(
            source.model_id, metadata.name, self._hub, endpoint=self._hub_endpoint
        )

    @contextmanager
    def _hub_download(self, source: HuggingFaceSource | S3Source) -> Iterator[None]:
        """Marks the hub download of `source` in use (eviction skips it) while it is fetched and
        linked into a package."""
        name = hub_folder(source.model_id) if isinstance(source, HuggingFaceSource) else None
        if name is None:
            yield
            return
        with self._guard:
            self._hub_in_use[name] += 1
        try:
            yield
        finally:
            with self._guard:
                self._hub_in_use[name] -= 1
                if self._hub_in_use[name] <= 0:
                    del self._hub_in_use[name]

    def evict(self, keep: Collection[str] = ()) -> list[Path]:
        """Remove least recently used entries until the work dir fits the bound; return them.
        Never a key in `keep`, a key being prepared (its lock held), a hub download in use,
        an entry used within `keep_recent_seconds`, nor the `*.failed.json` markers."""
        if self._max_bytes is None:
            return []
        with self._evicting:
            entries = self._entries(keep, time.time() - self._keep_recent_seconds)
            removed = []
            for victim in choose_victims(entries, self._max_bytes):
                if self._remove(victim):
                    removed.append(victim.path)
            return removed

    def _entries(self, keep: Collection[str], recent_since: float) -> list[CacheEntry]:
        with self._guard:
            hub_in_use = set(self._hub_in_use)
        entries = []
        for root, is_hub in ((self._root, False), (self._hub, True)):
            try:
                children = sorted(root.iterdir())
            except FileNotFoundError:
                continue
            for path in children:
                if not path.is_dir() or path.is_symlink() or path.name.startswith("."):
                    continue
                key = None if is_hub else path.name.split(".", 1)[0]
                mtime = path.stat().st_mtime
                pinned = (
                    mtime >= recent_since
                    or (key is not None and key in keep)
                    or (is_hub and path.name in hub_in_use)
                )
                entries.append(CacheEntry(path, key, mtime, _inodes(path), evictable=not pinned))
        return entries

    def _remove(self, entry: CacheEntry) -> bool:
        """Rename, then delete: a half-deleted entry is never taken for a cached package."""
        if entry.key is None:
            return self._remove_unlocked(entry)
        with self._lock_for(entry.key, blocking=False) as acquired:
            return acquired and self._remove_unlocked(entry)

    def _remove_unlocked(self, entry: CacheEntry) -> bool:
        # In the packages root, so that what a crash leaves is an entry evicted later.
        self._root.mkdir(parents=True, exist_ok=True)
        trash = self._root / f"evicted-{uuid.uuid4().hex[:12]}"
        with self._guard:  # a hub download that started since the entries were listed
            if entry.key is None and entry.path.name in self._hub_in_use:
                return False
            try:
                entry.path.rename(trash)
            except FileNotFoundError:
                return False
        shutil.rmtree(trash, ignore_errors=True)
        log.info("evicted %s from the package cache", entry.path)
        return True

    @staticmethod
    def _relocated(prepared: PreparedPackage, old: Path, new: Path) -> PreparedPackage:
        return PreparedPackage(
            digest=prepared.digest,
            package_dir=new / prepared.package_dir.relative_to(old),
            archive=new / prepared.archive.relative_to(old),
            archive_digest=prepared.archive_digest,
        )

    @staticmethod
    def _cached(home: Path) -> PreparedPackage | None:
        record_path = home / "package.json"
        if not record_path.is_file():
            return None
        record = json.loads(record_path.read_text())
        return PreparedPackage(
            digest=record["digest"],
            package_dir=home / record["packageDir"],
            archive=home / "model.tar.gz",
            archive_digest=record["archiveDigest"],
        )


class PackagingJobs:
    """Packaging off the reconcile: `ready()` answers at once with the package, or starts (or
    joins) the one job of its source key in a pool of `max_concurrent` threads and answers None;
    a later call takes the job's result or raises its error. A job is forgotten once a caller
    has taken it, or `forget_after` seconds after it finished if nobody came back for it (a
    resource deleted meanwhile): the jobs kept are bounded by the packaging in flight."""

    def __init__(
        self,
        packager: ModelPackager,
        *,
        max_concurrent: int,
        forget_after: float = DEFAULT_KEEP_RECENT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._packager = packager
        self._pool = ThreadPoolExecutor(max_concurrent, thread_name_prefix="packaging")
        self._jobs: dict[str, Future[PreparedPackage]] = {}
        self._finished_at: dict[str, float] = {}
        self._guard = threading.Lock()
        self._forget_after = forget_after
        self._clock = clock

    def ready(self, spec: DeploymentSpec, region: str) -> PreparedPackage | None:
        key = self._packager.key(spec)
        with self._guard:
            self._forget_stale()
            job = self._jobs.get(key)
            if job is not None and job.done():
                del self._jobs[key]
                self._finished_at.pop(key, None)
        if job is not None:
            return job.result() if job.done() else None  # result() raises the job's error
        cached = self._packager.cached(spec)
        if cached is not None:
            return cached
        started: Future[PreparedPackage] | None = None
        with self._guard:
            if key not in self._jobs:
                # In the pass's context: the job reads the source as the role the pass acts as.
                context = contextvars.copy_context()
                started = self._pool.submit(context.run, self._packager.prepare, spec, region)
                self._jobs[key] = started
        if started is not None:  # outside the guard: a job already done runs the callback here
            started.add_done_callback(lambda _, k=key: self._finished(k))  # type: ignore[misc]
        return None

    def job_of(self, spec: DeploymentSpec) -> Future[PreparedPackage] | None:
        """The job building `spec`'s package, while one is kept: a waiter is woken when it ends
        instead of looking again and again."""
        with self._guard:
            return self._jobs.get(self._packager.key(spec))

    def _finished(self, key: str) -> None:
        with self._guard:
            if key in self._jobs:
                self._finished_at[key] = self._clock()

    def _forget_stale(self) -> None:
        since = self._clock() - self._forget_after
        for key in [k for k, at in self._finished_at.items() if at < since]:
            self._jobs.pop(key, None)
            del self._finished_at[key]

    def __len__(self) -> int:
        with self._guard:
            return len(self._jobs)


@dataclass(frozen=True)
class CacheEntry:
    """A package directory (`key` set) or a hub download (`key` None) under the work dir."""

    path: Path
    key: str | None
    mtime: float
    inodes: dict[tuple[int, int], int] = field(repr=False)  # (st_dev, st_ino) -> bytes
    evictable: bool = True


def choose_victims(entries: Sequence[CacheEntry], max_bytes: int) -> list[CacheEntry]:
    """The evictable entries to remove, least recently used first, until the rest fit
    `max_bytes`. A file hard-linked from several entries (a package links its hub download's
    weights) counts once, and frees its bytes only with the last entry that holds it."""
    holders: Counter[tuple[int, int]] = Counter()
    sizes: dict[tuple[int, int], int] = {}
    for entry in entries:
        holders.update(entry.inodes.keys())
        sizes.update(entry.inodes)
    total = sum(sizes.values())
    victims = []
    for entry in sorted((e for e in entries if e.evictable), key=lambda e: (e.mtime, e.path)):
        if total <= max_bytes:
            break
        victims.append(entry)
        for inode in entry.inodes:
            holders[inode] -= 1
            if holders[inode] == 0:
                total -= sizes[inode]
    return victims


def hub_folder(model_id: str) -> str:
    """The hub cache's folder of a model repository (huggingface_hub's repo_folder_name)."""
    return "models--" + model_id.replace("/", "--")


def _inodes(root: Path) -> dict[tuple[int, int], int]:
    """The regular files under root, links not followed (a hub snapshot links to its blobs)."""
    found = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode):
                found[(st.st_dev, st.st_ino)] = st.st_size
    return found


def _touch(path: Path) -> None:
    """Mark a cache entry used now (least recently used goes first)."""
    with suppress(FileNotFoundError):
        os.utime(path)


def describe_source(spec: DeploymentSpec) -> str:
    source = spec.source
    if isinstance(source, HuggingFaceSource):
        return f"huggingface {source.model_id}@{source.revision}"
    if isinstance(source, S3Source):
        return f"s3 {source.uri}"
    return f"mlflow {mask_uri(source.model_uri)}"


def _check_applicable(spec: DeploymentSpec) -> None:
    """An MLflow package carries its own inference settings: spec.model.inference cannot apply."""
    if not isinstance(spec.source, MlflowSource):
        return
    overridden = validation.non_default_inference(spec.inference)
    if overridden:
        raise TerminalError(
            "FieldNotApplicable",
            f"spec.model.inference ({', '.join(overridden)}) does not apply to an mlflow "
            "source: the MLflow model is served with its own settings; remove the field",
        )


def _check_engine_available(spec: DeploymentSpec) -> None:
    """Before anything is fetched: an engine whose packaging toolchain this operator's image
    lacks (onnxruntime's export needs torch) is a clear, terminal condition. Not remembered:
    the check is cheap, and an operator image with the toolchain passes it."""
    from qa_operator.model.packaging import engine_unavailable

    if isinstance(spec.source, MlflowSource):
        return  # an MLflow model is packaged already
    if (problem := engine_unavailable(spec.inference.engine)) is not None:
        raise TerminalError("EngineUnavailable", problem)


def _require_valid(spec: DeploymentSpec, problem: str | None) -> None:
    if problem is not None:
        raise TerminalError("InvalidModel", f"{describe_source(spec)}: {problem}")


def _huggingface_model_problem(model_dir: Path) -> str | None:
    """A QA head and a fast tokenizer, from the files; the tokenizer is loaded only when a slow
    vocabulary must be converted."""
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        return "no config.json: not a HuggingFace model directory"
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"config.json is not JSON: {exc}"
    problem = validation.architecture_problem(config if isinstance(config, dict) else {})
    if problem is not None:
        return problem
    files = validation.tokenizer_files({p.name for p in model_dir.iterdir()})
    if files is validation.TokenizerFiles.NONE:
        return f"{validation.NO_FAST_TOKENIZER} and no vocabulary to build one from"
    if files is validation.TokenizerFiles.CONVERTIBLE:
        why = _fast_tokenizer_error(model_dir)
        if why is not None:
            return f"{validation.NO_FAST_TOKENIZER}, and the vocabulary does not convert: {why}"
    return None


def _fast_tokenizer_error(model_dir: Path) -> str | None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except Exception as exc:  # whatever stops it loading, there is no tokenizer to serve with
        return f"{type(exc).__name__}: {exc}"
    if not getattr(tokenizer, "is_fast", False):
        return f"{type(tokenizer).__name__} is a slow tokenizer"
    return None


def _mlflow_model_problem(model_dir: Path) -> str | None:
    import yaml

    mlmodel_path = model_dir / "MLmodel"
    if not mlmodel_path.is_file():
        return "no MLmodel file: not an MLflow model"
    try:
        mlmodel = yaml.safe_load(mlmodel_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return f"MLmodel is not YAML: {exc}"
    return validation.mlmodel_problem(mlmodel if isinstance(mlmodel, dict) else {})


def _raise_remembered(marker: Path) -> None:
    try:
        record = json.loads(marker.read_text())
    except FileNotFoundError:
        return
    raise TerminalError(record["reason"], record["message"])


def _remember(marker: Path, error: OperatorError, source: str) -> None:
    if not isinstance(error, TerminalError) or error.reason not in _REMEMBERED_REASONS:
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    partial = marker.with_name(marker.name + ".partial")
    record = {"source": source, "reason": error.reason, "message": error.message}
    partial.write_text(json.dumps(record))
    partial.replace(marker)


def _classify(exc: Exception, source: str) -> OperatorError:
    from qa_operator.aws.errors import as_operator_error, is_retryable_aws

    if isinstance(exc, RaisedInChild):  # classified by the names of what the child raised
        names, name = set(exc.type_names), exc.type_names[0]
    else:
        names, name = {cls.__name__ for cls in type(exc).__mro__}, type(exc).__name__
    if "LocalEntryNotFoundError" in names:  # the hub did not answer; nothing is cached either
        return RetryableError("ModelDownloadFailed", f"cannot reach the hub for {source}: {exc}")
    if names & (_MISSING_MODEL | {"FileNotFoundError"}):
        return TerminalError("ModelNotFound", f"cannot fetch {source}: {exc}")
    if is_retryable_aws(exc) is not None:
        return as_operator_error(exc, f"fetching {source}")
    if names & {"ConnectionError", "Timeout", "HfHubHTTPError", "OSError"}:
        return RetryableError("ModelDownloadFailed", f"cannot fetch {source}: {exc}")
    return TerminalError("PackagingFailed", f"packaging {source}: {name}: {exc}")
