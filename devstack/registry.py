"""A real OCI registry (distribution 2.8, Debian's `docker-registry`) on loopback.

Run as a plain process with our own config: filesystem storage in a temp dir, deletes enabled,
optionally htpasswd basic auth. `make test-peers` installs the package; if the binary is missing
or the registry does not come up,
starting it fails (the tests never skip).
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from devstack.processes import free_port, stop

BINARY = "/usr/bin/docker-registry"
START_TIMEOUT_S = 30.0


@dataclass
class Registry:
    url: str  # http://127.0.0.1:PORT
    host: str  # 127.0.0.1:PORT, as image references spell it
    log_path: Path
    storage_dir: Path
    username: str | None = None
    password: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def auth(self) -> tuple[str, str] | None:
        """(username, password) for `requests`, or None when the registry is open."""
        if self.username is None or self.password is None:
            return None
        return (self.username, self.password)


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash, the only scheme distribution's htpasswd accepts."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def _config(port: int, storage: Path, htpasswd: Path | None) -> str:
    auth = (
        f"auth:\n  htpasswd:\n    realm: qa-operator-tests\n    path: {htpasswd}\n"
        if htpasswd is not None
        else ""
    )
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  fields:\n    service: registry\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        "  maintenance:\n    uploadpurging:\n      enabled: false\n"
        "http:\n"
        f"  addr: 127.0.0.1:{port}\n"
        f"  secret: {secrets.token_hex(16)}\n"
        "  headers:\n    X-Content-Type-Options: [nosniff]\n"
        f"{auth}"
    )


def start_registry(workdir: Path, *, username: str | None = None) -> Registry:
    """Start a registry under `workdir`; wait until /v2/ answers; raise with its log if not."""
    if not Path(BINARY).exists() and shutil.which("docker-registry") is None:
        raise RuntimeError(
            f"{BINARY} is missing: run `make test-peers` (apt-get install docker-registry)"
        )
    binary = BINARY if Path(BINARY).exists() else str(shutil.which("docker-registry"))
    storage = workdir / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    password = None
    htpasswd = None
    if username is not None:
        password = secrets.token_urlsafe(12)
        htpasswd = workdir / "htpasswd"
        htpasswd.write_text(f"{username}:{bcrypt_hash(password)}\n")
    log_path = workdir / "registry.log"
    last_error = ""
    for _attempt in range(3):  # the free port may be taken between probe and bind
        port = free_port()
        config = workdir / "config.yml"
        config.write_text(_config(port, storage, htpasswd))
        log = log_path.open("ab")
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=workdir
        )
        log.close()
        registry = Registry(
            url=f"http://127.0.0.1:{port}",
            host=f"127.0.0.1:{port}",
            log_path=log_path,
            storage_dir=storage,
            username=username,
            password=password,
            process=process,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                response = requests.get(f"{registry.url}/v2/", auth=registry.auth, timeout=2)
                if response.status_code == 200:
                    return registry
                last_error = f"/v2/ answered {response.status_code}"
            except requests.ConnectionError as error:
                last_error = str(error)
            time.sleep(0.1)
        stop_registry(registry)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
    raise RuntimeError(f"OCI registry did not start ({last_error}); log {log_path}:\n{tail}")


def stop_registry(registry: Registry) -> None:
    if registry.process is not None:
        stop(registry.process)
