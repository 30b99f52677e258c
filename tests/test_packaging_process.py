"""Packaging's heavy half in a child process: the same package, errors classified, the child gone
when idle, a dead child a clear failure, and the operator's process never loading MLflow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa_operator.errors import TerminalError
from qa_operator.model.config import InferenceConfig
from qa_operator.model.packaging import ModelPackage
from qa_operator.packaging_process import ChildProcess, RaisedInChild

REPO = Path(__file__).resolve().parents[1]
WAIT = 60.0


@pytest.fixture
def child() -> Iterator[ChildProcess]:
    process = ChildProcess(max_workers=1, idle_seconds=600)
    yield process
    process.close()


def children_of_this_process() -> list[int]:
    """The packaging children of this process, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == os.getpid() and b"qa_operator.packaging_process" in cmdline:
            found.append(int(entry.name))
    return found


def test_the_child_builds_the_package_this_process_would(
    child: ChildProcess, tiny_qa_model_dir: Path, tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    built = child.build_package(tiny_qa_model_dir, tmp_path / "package", InferenceConfig(), None)
    assert built.digest == tiny_qa_package.digest
    assert (built.path / "MLmodel").is_file()
    assert child.alive == 1, "kept for the next job"
    again = child.build_package(tiny_qa_model_dir, tmp_path / "again", InferenceConfig(), None)
    assert again.digest == built.digest
    assert len(children_of_this_process()) == 1, "the same child served both"


def test_what_the_child_raises_comes_back_classified(
    child: ChildProcess, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="not a HuggingFace model directory"):
        child.build_package(tmp_path, tmp_path / "package", InferenceConfig(), None)
    (tmp_path / "taken").mkdir()
    with pytest.raises(RaisedInChild) as raised:
        child.build_package(tiny_qa_model_dir, tmp_path / "taken", InferenceConfig(), None)
    assert raised.value.type_names[:2] == ("FileExistsError", "OSError")
    assert "already exists" in str(raised.value)


def test_an_idle_child_exits_and_a_later_job_starts_another(
    tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    child = ChildProcess(max_workers=1, idle_seconds=0.2)
    try:
        child.build_package(tiny_qa_model_dir, tmp_path / "one", InferenceConfig(), None)
        deadline = time.monotonic() + WAIT
        while (child.alive or children_of_this_process()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert child.alive == 0 and children_of_this_process() == []
        child.build_package(tiny_qa_model_dir, tmp_path / "two", InferenceConfig(), None)
        assert child.alive == 1
    finally:
        child.close()
    assert children_of_this_process() == []


def test_a_child_that_dies_mid_job_fails_that_job_and_the_next_gets_a_new_one(
    child: ChildProcess, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    failure: list[BaseException] = []

    def build() -> None:
        try:
            child.build_package(tiny_qa_model_dir, tmp_path / "one", InferenceConfig(), None)
        except BaseException as exc:
            failure.append(exc)

    worker = threading.Thread(target=build)
    worker.start()
    deadline = time.monotonic() + WAIT
    while not children_of_this_process() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(children_of_this_process()[0], signal.SIGKILL)  # it is still importing MLflow
    worker.join(WAIT)
    assert len(failure) == 1 and isinstance(failure[0], TerminalError), failure
    assert failure[0].reason == "PackagingFailed"
    assert "died" in failure[0].message
    built = child.build_package(tiny_qa_model_dir, tmp_path / "two", InferenceConfig(), None)
    assert (built.path / "MLmodel").is_file()


def test_the_operators_process_never_imports_mlflow_torch_or_pandas(
    tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from qa_operator.model.config import InferenceConfig
        from qa_operator.packaging_process import ChildProcess

        child = ChildProcess(max_workers=1)
        package = child.build_package(
            Path({str(tiny_qa_model_dir)!r}), Path({str(tmp_path / "package")!r}),
            InferenceConfig(), None,
        )
        child.close()
        print(package.digest, sorted({{"mlflow", "torch", "pandas"}} & set(sys.modules)))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}
    run = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    digest, loaded = run.stdout.strip().split(" ", 1)
    assert digest.startswith("sha256:")
    assert loaded == "[]"
