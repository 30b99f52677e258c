"""`make demo` end to end, and the local stack used from other processes.

Both run what users run, as subprocesses with their own state dir: `python -m devstack.demo`
(its own local stack, the operator, an endpoint that runs the serving image as a container) and
`python -m devstack up`, whose kubeconfig and aws.env are then used by a shell that has nothing
else. No timings are asserted.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from qa_operator.model.trained import HELD_OUT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Warm caches take a minute or two; a cold machine builds the serving image and trains the model.
DEMO_TIMEOUT_S = 1800
UP_TIMEOUT_S = 300


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    """Ask it to stop (it stops its stack); kill it if it has not within two minutes."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.timeout(DEMO_TIMEOUT_S + 300)
def test_the_demo_answers_updates_and_leaves_nothing_behind(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "devstack.demo", "--state-dir", str(tmp_path / "stack")]
    demo = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = demo.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _stop(demo)
        output = demo.stdout.read() if demo.stdout else ""
        pytest.fail(f"the demo did not finish in {DEMO_TIMEOUT_S} s:\n{output[-8000:]}")

    assert demo.returncode == 0, output[-8000:]
    for question, expected in HELD_OUT:
        answered = rf"^\s+{re.escape(question)}\s+-> '{re.escape(expected)}'\s.*\sright$"
        assert re.search(answered, output, re.MULTILINE | re.IGNORECASE), output[-8000:]
    assert "WRONG" not in output
    assert "nothing left: 0 endpoints, 0 endpoint configs, 0 models, 0 package objects" in output
    for step in "abcdefghi":
        assert f"({step}) done in " in output
    assert "Timing:" in output


def _read_lines(process: subprocess.Popen[str], into: list[str]) -> threading.Thread:
    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            into.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def _listening(server: str) -> bool:
    address = urlsplit(server)
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((address.hostname or "", address.port or 443)) == 0


@pytest.mark.timeout(UP_TIMEOUT_S + 300)
def test_a_running_stack_is_used_through_its_files_alone(tmp_path: Path) -> None:
    from devstack.__main__ import READY_LINE

    state = tmp_path / "stack"
    up = subprocess.Popen(
        [sys.executable, "-m", "devstack", "up", "--state-dir", str(state)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = _read_lines(up, lines)
    try:
        deadline = time.monotonic() + UP_TIMEOUT_S
        while not any(READY_LINE in line for line in lines):
            assert up.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        kubeconfig = yaml.safe_load((state / "kubeconfig").read_text())
        server = kubeconfig["clusters"][0]["cluster"]["server"]

        # A shell with nothing but PATH: everything else comes from `python -m devstack env`.
        script = f"""
            set -e
            exports="$({sys.executable} -m devstack env --state-dir {state})"
            eval "$exports"
            kubectl get qamd -A
            kubectl auth can-i patch qamodeldeployments/status \\
                --as system:serviceaccount:qa-operator:qa-operator
            {sys.executable} -c '
import boto3
s3 = boto3.client("s3")
s3.create_bucket(Bucket="from-another-process")
print([b["Name"] for b in s3.list_buckets()["Buckets"]])
print(boto3.client("sagemaker").list_endpoints()["Endpoints"])
'
            test -n "$DEVSTACK_REGISTRY"
            """
        shell = subprocess.run(
            ["bash", "-c", script],
            cwd=REPO,
            env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert shell.returncode == 0, shell.stdout + shell.stderr
        assert "No resources found" in shell.stderr
        assert shell.stdout.splitlines()[:3] == ["yes", "['from-another-process']", "[]"]

        second = subprocess.run(
            [sys.executable, "-m", "devstack", "up", "--state-dir", str(state)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert second.returncode == 1
        assert "already runs" in second.stderr
    finally:
        _stop(up, signal.SIGINT)
        reader.join(timeout=10)

    assert up.returncode == 0, "".join(lines)
    assert "stopped" in "".join(lines)
    assert not (state / "kubeconfig").exists()
    assert not (state / "aws.env").exists()
    assert not _listening(server)
    after = subprocess.run(
        [sys.executable, "-m", "devstack", "env", "--state-dir", str(state)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert after.returncode == 1
    assert "no local stack runs" in after.stderr
