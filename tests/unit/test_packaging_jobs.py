"""PackagingJobs: packaging off the reconcile, one job per source key, errors kept, nothing kept."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from qa_operator.artifacts import ModelPackager, PackagingJobs, PreparedPackage
from qa_operator.errors import RetryableError, TerminalError
from qa_operator.spec import DeploymentSpec
from support.stub_packages import s3_spec, write_stub_package

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
        return write_stub_package(staging)


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
    assert jobs.ready(s3_spec("one"), "r") is None  # the gate is shut: it did not wait for it
    assert jobs.ready(s3_spec("one"), "r") is None  # joined, not started again
    assert len(jobs) == 1
    packager.gate.set()
    prepared = wait_done(jobs, s3_spec("one"))
    assert prepared.digest == "sha256:0"
    assert packager.packaged == [packager.key(s3_spec("one"))]
    assert len(jobs) == 0, "a job taken is forgotten"
    assert jobs.ready(s3_spec("one"), "r") == prepared, "then served from the disk cache"
    assert packager.packaged == [packager.key(s3_spec("one"))]


def test_distinct_sources_get_their_own_jobs(tmp_path: Path) -> None:
    packager = GatedPackager(tmp_path)
    jobs = PackagingJobs(packager, max_concurrent=2)
    assert jobs.ready(s3_spec("one"), "r") is None
    assert jobs.ready(s3_spec("two"), "r") is None
    assert len(jobs) == 2
    packager.gate.set()
    wait_done(jobs, s3_spec("one"))
    wait_done(jobs, s3_spec("two"))
    assert sorted(packager.packaged) == sorted(packager.key(s3_spec(n)) for n in ("one", "two"))


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
    assert jobs.ready(s3_spec("one"), "r") is None
    packager.gate.set()
    with pytest.raises(type(error)):
        wait_done(jobs, s3_spec("one"))
    assert len(jobs) == 0
    if remembered:
        with pytest.raises(TerminalError):
            jobs.ready(s3_spec("one"), "r")
        assert len(jobs) == 0, "a remembered failure starts no job"
    else:
        assert jobs.ready(s3_spec("one"), "r") is None, "a transient failure is packaged again"
        assert len(jobs) == 1


def test_a_finished_job_nobody_came_back_for_is_forgotten(tmp_path: Path) -> None:
    now = [0.0]
    packager = GatedPackager(tmp_path)
    packager.gate.set()
    jobs = PackagingJobs(packager, max_concurrent=1, forget_after=60, clock=lambda: now[0])
    assert jobs.ready(s3_spec("gone"), "r") is None
    wait_done(jobs, s3_spec("other"))  # another source; "gone"'s job finishes meanwhile
    assert len(jobs) == 1
    now[0] = 61.0
    wait_done(jobs, s3_spec("third"))
    assert len(jobs) == 0
