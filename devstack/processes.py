"""What every test peer needs: a free loopback port, and a clean stop of its process."""

from __future__ import annotations

import signal
import socket
import subprocess
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(
    process: subprocess.Popen[Any], *, timeout: float = 10.0, sig: int = signal.SIGTERM
) -> None:
    """Ask the process to stop with `sig`; kill it when it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
