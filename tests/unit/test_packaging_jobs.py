"""PackagingJobs: packaging off the reconcile, one job per source key, errors kept, nothing kept."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from qa_operator.artifacts import ModelPackager, PackagingJobs, PreparedPackage
from qa_operator.errors import RetryableError, TerminalError
from qa_operator.spec import DeploymentSpec, parse_spec

WAIT = 10.0


class GatedPackager(ModelPackager):
    """Packages (a stub package, as the real one lays it out) only when the test opens the
    gate; records what it packaged."""

    def __init__(self, work: Path) -> None:
        super().__init__(work, max_concurrent=2, s3_client=lambda region: None)
        self.gate = threading.Event()
        self.fail: Exception | None = None
        self.packaged: list[str] = []

    def _package(self, spec: DeploymentSpec, region: str, staging: Path) -> PreparedPackage:
        assert self.gate.wait(WAIT)
        if self.fail is not None:
            raise self.fail
        self.packaged.append(staging.name.split(".")[0])
        package = staging / "package"
        package.mkdir()
        (package / "MLmodel").write_text("stub")
        (staging / "model.tar.gz").write_bytes(b"")
        record = {"digest": "sha256:0", "archiveDigest": "sha256:1", "packageDir": "package"}
        (staging / "package.json").write_text(json.dumps(record))
        return PreparedPackage("sha256:0", package, staging / "model.tar.gz", "sha256:1")


def spec(name: str) -> DeploymentSpec:
    return parse_spec(
        {
            "model": {"s3": {"uri": f"s3://bucket/{name}/"}},
            "endpoint": {"instanceType": "ml.m5.large"},
        }
    )


def wait_done(jobs: PackagingJobs, one: DeploymentSpec) -> PreparedPackage:
    """Look again, as the reconciler's requeue does, until the job's result (or error) comes."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        prepared = jobs.ready(one, "r")
        if prepared is not None:
            return prepared
        time.sleep(0.01)
    raise AssertionError("the job never finished")


def test_a_package_not_built_yet_answers_at_once_and_one_job_serves_every_caller(
    tmp_path: Path,
) -> None:
    packager = GatedPackager(tmp_path)
    jobs = PackagingJobs(packager, max_concurrent=2)
    assert jobs.ready(spec("one"), "r") is None  # the gate is shut: it did not wait for it
    assert jobs.ready(spec("one"), "r") is None  # joined, not started again
    assert len(jobs) == 1
    packager.gate.set()
    prepared = wait_done(jobs, spec("one"))
    assert prepared.digest == "sha256:0"
    assert packager.packaged == [packager.key(spec("one"))]
    assert len(jobs) == 0, "a job taken is forgotten"
    assert jobs.ready(spec("one"), "r") == prepared, "then served from the disk cache"
    assert packager.packaged == [packager.key(spec("one"))]


def test_distinct_sources_get_their_own_jobs(tmp_path: Path) -> None:
    packager = GatedPackager(tmp_path)
    jobs = PackagingJobs(packager, max_concurrent=2)
    assert jobs.ready(spec("one"), "r") is None
    assert jobs.ready(spec("two"), "r") is None
    assert len(jobs) == 2
    packager.gate.set()
    wait_done(jobs, spec("one"))
    wait_done(jobs, spec("two"))
    assert sorted(packager.packaged) == sorted(packager.key(spec(n)) for n in ("one", "two"))


@pytest.mark.parametrize(
    ("error", "remembered"),
    [
        (TerminalError("InvalidModel", "no QA head"), True),  # the source itself: kept on disk
        (RetryableError("ModelDownloadFailed", "hub down"), False),  # tried again next time
    ],
)
def test_a_failed_job_raises_on_the_next_look(
    tmp_path: Path, error: Exception, remembered: bool
) -> None:
    packager = GatedPackager(tmp_path)
    packager.fail = error
    jobs = PackagingJobs(packager, max_concurrent=1)
    assert jobs.ready(spec("one"), "r") is None
    packager.gate.set()
    with pytest.raises(type(error)):
        wait_done(jobs, spec("one"))
    assert len(jobs) == 0
    if remembered:
        with pytest.raises(TerminalError):
            jobs.ready(spec("one"), "r")
        assert len(jobs) == 0, "a remembered failure starts no job"
    else:
        assert jobs.ready(spec("one"), "r") is None, "a transient failure is packaged again"
        assert len(jobs) == 1


def test_a_finished_job_nobody_came_back_for_is_forgotten(tmp_path: Path) -> None:
    now = [0.0]
    packager = GatedPackager(tmp_path)
    packager.gate.set()
    jobs = PackagingJobs(packager, max_concurrent=1, forget_after=60, clock=lambda: now[0])
    assert jobs.ready(spec("gone"), "r") is None
    wait_done(jobs, spec("other"))  # another source; "gone"'s job finishes meanwhile
    assert len(jobs) == 1
    now[0] = 61.0
    wait_done(jobs, spec("third"))
    assert len(jobs) == 0
