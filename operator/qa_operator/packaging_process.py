"""Packaging's heavy half in a child process, so that the operator's own stays small.

MLflow saves a package by loading the model once (torch, transformers, pandas), and an MLflow
source is fetched with MLflow: in the operator's process they would stay resident for good,
hundreds of MB for a few seconds' work. Here they live in a spawned child (`max_workers` at
most) that exits `idle_seconds` after its last job, and a later job starts a fresh one.

What the child raises comes back classified, as artifacts.py would have classified it in
process (an OperatorError, or a ValueError about the model): exceptions of libraries the operator
does not import never cross. A child that dies mid-job (killed, out of memory) fails that job
with PackagingFailed.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from qa_operator.errors import OperatorError, RetryableError, TerminalError
from qa_operator.model.config import InferenceConfig
from qa_operator.model.limits import ServingLimits
from qa_operator.model.packaging import ModelPackage

DEFAULT_IDLE_SECONDS = 60.0


class PackageBuilder(Protocol):
    """Where packaging's heavy half runs: in this process, or in a child."""

    def build_package(
        self, model_dir: Path, dest: Path, config: InferenceConfig, limits: ServingLimits | None
    ) -> ModelPackage: ...

    def fetch_mlflow(self, model_uri: str, dest: Path, tracking_uri: str | None) -> Path: ...


class InProcess:
    """In the calling process: for tools and tests that load the model anyway."""

    def build_package(
        self, model_dir: Path, dest: Path, config: InferenceConfig, limits: ServingLimits | None
    ) -> ModelPackage:
        return _build_package(model_dir, dest, config, limits)

    def fetch_mlflow(self, model_uri: str, dest: Path, tracking_uri: str | None) -> Path:
        return _fetch_mlflow(model_uri, dest, tracking_uri)


class RaisedInChild(Exception):
    """An exception of the child's that is neither an OperatorError nor a ValueError, by its
    class names (most derived first) and message: enough to classify it (artifacts.py)."""

    def __init__(self, type_names: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.type_names = type_names


@dataclass(frozen=True)
class _Failed:
    """An error as it crosses from the child: its kind and text, never the object (its class
    may live in a library the operator does not import)."""

    kind: str  # "terminal", "retryable", "value" or "other"
    reason: str
    message: str
    type_names: tuple[str, ...] = ()

    def error(self) -> Exception:
        if self.kind == "terminal":
            return TerminalError(self.reason, self.message)
        if self.kind == "retryable":
            return RetryableError(self.reason, self.message)
        if self.kind == "value":
            return ValueError(self.message)
        return RaisedInChild(self.type_names, self.message)


class ChildProcess:
    """In child processes (`python -m qa_operator.packaging_process`), at most `max_workers`
    alive, each one retired `idle_seconds` after its last job. Requests and results travel as
    length-prefixed pickles on the child's stdin and a private copy of its stdout; whatever the
    libraries print goes to its stderr, which is the operator's."""

    def __init__(self, max_workers: int, idle_seconds: float = DEFAULT_IDLE_SECONDS) -> None:
        self._idle_seconds = idle_seconds
        self._idle: list[_Worker] = []
        self._alive = 0
        self._slots = threading.BoundedSemaphore(max_workers)
        self._guard = threading.Lock()

    def build_package(
        self, model_dir: Path, dest: Path, config: InferenceConfig, limits: ServingLimits | None
    ) -> ModelPackage:
        return self._run("build_package", model_dir, dest, config, limits)

    def fetch_mlflow(self, model_uri: str, dest: Path, tracking_uri: str | None) -> Path:
        return self._run("fetch_mlflow", model_uri, dest, tracking_uri)

    @property
    def alive(self) -> int:
        """How many child processes are up (working, or idle and not yet retired)."""
        with self._guard:
            return self._alive

    def close(self) -> None:
        with self._guard:
            idle, self._idle = self._idle, []
            self._alive -= len(idle)
        for worker in idle:
            worker.stop()

    def _run(self, job: str, *args: Any) -> Any:
        with self._slots:
            worker = self._take()
            try:
                result = worker.ask(job, args)
            except _WorkerDied as died:
                with self._guard:
                    self._alive -= 1
                raise TerminalError(
                    "PackagingFailed",
                    f"the packaging process died before it finished ({died}; out of memory?)",
                ) from None
            self._give_back(worker)
        if isinstance(result, _Failed):
            raise result.error()
        return result

    def _take(self) -> _Worker:
        with self._guard:
            while self._idle:
                worker = self._idle.pop()
                worker.retire_at = None
                if worker.running():
                    return worker
                self._alive -= 1
            self._alive += 1
        return _Worker.start()

    def _give_back(self, worker: _Worker) -> None:
        worker.retire_at = time.monotonic() + self._idle_seconds
        with self._guard:
            self._idle.append(worker)
        timer = threading.Timer(self._idle_seconds, self._retire_idle)
        timer.daemon = True
        timer.start()

    def _retire_idle(self) -> None:
        now = time.monotonic()
        with self._guard:
            due = [w for w in self._idle if w.retire_at is not None and w.retire_at <= now]
            self._idle = [w for w in self._idle if w not in due]
            self._alive -= len(due)
        for worker in due:
            worker.stop()


class _WorkerDied(Exception):
    pass


class _Worker:
    """One child process and its two pipes."""

    def __init__(self, process: subprocess.Popen[bytes], results: IO[bytes]) -> None:
        self.process = process
        self.results = results
        self.retire_at: float | None = None

    @classmethod
    def start(cls) -> _Worker:
        read_end, write_end = os.pipe()
        source_root = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (source_root, path)))}
        process = subprocess.Popen(
            [sys.executable, "-m", "qa_operator.packaging_process", str(write_end)],
            stdin=subprocess.PIPE,
            pass_fds=(write_end,),
            env=env,
        )
        os.close(write_end)
        return cls(process, os.fdopen(read_end, "rb"))

    def running(self) -> bool:
        return self.process.poll() is None

    def ask(self, job: str, args: tuple[Any, ...]) -> Any:
        assert self.process.stdin is not None
        try:
            _send(self.process.stdin, (job, args))
            return _receive(self.results)
        except (OSError, EOFError) as exc:
            self.stop()
            raise _WorkerDied(f"exit code {self.process.returncode}") from exc

    def stop(self) -> None:
        """Closing its stdin ends the child's loop; it is killed if it does not end."""
        with suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.results.close()


def _send(stream: IO[bytes], message: Any) -> None:
    payload = pickle.dumps(message)
    stream.write(len(payload).to_bytes(8, "big") + payload)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError("the other end closed")
    size = int.from_bytes(header, "big")
    payload = stream.read(size)
    if len(payload) < size:
        raise EOFError("the other end closed mid-message")
    return pickle.loads(payload)


def _contained(work: Callable[..., Any], *args: Any) -> Any:
    """In the child: `work`'s result, or its error as a _Failed."""
    try:
        return work(*args)
    except RetryableError as exc:
        return _Failed("retryable", exc.reason, exc.message)
    except OperatorError as exc:
        return _Failed("terminal", exc.reason, exc.message)
    except ValueError as exc:
        return _Failed("value", "", str(exc))
    except Exception as exc:
        names = tuple(cls.__name__ for cls in type(exc).__mro__)
        return _Failed("other", "", str(exc), names)


def _build_package(
    model_dir: Path, dest: Path, config: InferenceConfig, limits: ServingLimits | None
) -> ModelPackage:
    from qa_operator.model.packaging import build_package

    return build_package(model_dir, dest, config, limits=limits)


def _fetch_mlflow(model_uri: str, dest: Path, tracking_uri: str | None) -> Path:
    from qa_operator.model import sources

    return sources.fetch_mlflow(model_uri, dest, tracking_uri=tracking_uri)


_JOBS: dict[str, Callable[..., Any]] = {
    "build_package": _build_package,
    "fetch_mlflow": _fetch_mlflow,
}


def serve(results_fd: int) -> None:
    """The child's loop: a job from stdin, its result (or _Failed) to `results_fd`, until stdin
    closes. Anything written to stdout goes to stderr instead, never into the results."""
    results = os.fdopen(results_fd, "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    while True:
        try:
            job, args = _receive(requests)
        except EOFError:
            return
        _send(results, _contained(_JOBS[job], *args))


if __name__ == "__main__":
    # By its module's name, so that what it pickles is qa_operator.packaging_process's, not
    # __main__'s (which the operator could not unpickle).
    from qa_operator.packaging_process import serve as serve_as_module

    serve_as_module(int(sys.argv[1]))
