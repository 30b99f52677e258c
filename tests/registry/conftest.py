"""Fixtures for the registry tests: synthetic images (support.images), a fault proxy, auth."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from qa_operator.registry.client import (
    RegistryClient,
)
from support.images import Images


@pytest.fixture
def images() -> Images:
    return Images()


@pytest.fixture
def registry(oci_registry: Any) -> Iterator[RegistryClient]:
    client = RegistryClient(oci_registry.url)
    yield client
    client.close()


@pytest.fixture
def model_package(tmp_path: Path) -> Path:
    """A small stand-in for an MLflow package: nested dirs, text, binary, an executable."""
    root = tmp_path / "package"
    (root / "artifacts" / "model").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: qa\n")
    (root / "requirements.txt").write_text("transformers==5.24.0\n")
    (root / "artifacts" / "model" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    script = root / "artifacts" / "run.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o755)
    (root / "empty-dir").mkdir()
    return root


def package_files(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def files_of() -> Any:
    """`files_of(dir)`: relative path -> bytes for every file under dir."""
    return package_files


class DroppingProxy:
    """A TCP proxy to the registry that cuts every connection once `limit` request bytes passed.

    It stands for a push interrupted half-way: a crashed pod, a network partition.
    """

    def __init__(self, upstream: tuple[str, int], limit: int) -> None:
        self.upstream = upstream
        self.limit = limit
        self.forwarded = 0
        self.tripped = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._server.accept()
            except OSError:
                return
            if self.tripped.is_set():
                downstream.close()
                continue
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [downstream, upstream]
            threading.Thread(
                target=self._pump, args=(downstream, upstream, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(upstream, downstream, False), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(65536):
                if counted:
                    with self._lock:
                        room = self.limit - self.forwarded
                        self.forwarded += len(data)
                    if room < len(data):
                        sink.sendall(data[: max(room, 0)])
                        self._trip()
                        return
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _trip(self) -> None:
        self.tripped.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self._server.close()
        self._trip()


@pytest.fixture
def aws_env(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The `aws` fixture, with this process's environment pointing boto3 at it."""
    for name, value in aws.env().items():
        monkeypatch.setenv(name, value)
    return aws


@pytest.fixture
def dropping_proxy() -> Iterator[Any]:
    """`dropping_proxy(registry_url, limit)` -> a DroppingProxy; closed after the test."""
    made: list[DroppingProxy] = []

    def make(url: str, limit: int) -> DroppingProxy:
        host, _, port = url.split("://", 1)[1].partition(":")
        proxy = DroppingProxy((host, int(port)), limit)
        made.append(proxy)
        return proxy

    yield make
    for proxy in made:
        proxy.close()


# -- a registry behind the Bearer token flow (distribution's `auth: token`) ---------------------


@dataclass
class TokenRegistry:
    url: str
    host: str
    username: str
    password: str
    token_requests: list[dict[str, str]]  # query of each token request, in order


def _b64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenIssuer:
    """Signs registry tokens (RS256 JWTs carrying the signing certificate in `x5c`)."""

    def __init__(self, workdir: Path, issuer: str, service: str) -> None:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.issuer, self.service = issuer, service
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qa-operator test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.bundle = workdir / "token-ca.pem"
        self.bundle.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self._der = self.cert.public_bytes(serialization.Encoding.DER)

    def token(self, subject: str, access: list[dict[str, Any]]) -> str:
        import base64
        import time as clock
        import uuid

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._der).decode()]}
        now = int(clock.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    """docker-registry with `auth: token`, and a token service in this process checking a
    username/password and granting whatever repository scope was asked for."""
    import base64
    import secrets
    import subprocess
    import time as clock
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qsl, urlsplit

    workdir = tmp_path_factory.mktemp("registry-token")
    username, password = "qa-bearer", secrets.token_urlsafe(12)
    issuer = _TokenIssuer(workdir, issuer="qa-test-issuer", service="qa-test-registry")
    requests_seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = dict(parse_qsl(urlsplit(self.path).query))
            requests_seen.append(query)
            expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
            if self.headers.get("Authorization") != expected:
                self.send_response(401)
                self.end_headers()
                return
            access = []
            for scope in query.get("scope", "").split():
                kind, _, rest = scope.partition(":")
                name, _, actions = rest.rpartition(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            body = json.dumps({"token": issuer.token(username, access)}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    token_server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=token_server.serve_forever, daemon=True).start()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: {secrets.token_hex(16)}\n"
        "auth:\n  token:\n"
        f"    realm: http://127.0.0.1:{token_server.server_address[1]}/token\n"
        f"    service: {issuer.service}\n    issuer: {issuer.issuer}\n"
        f"    rootcertbundle: {issuer.bundle}\n"
    )
    log_path = workdir / "registry.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = clock.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or clock.monotonic() > deadline:
                process.kill()
                raise RuntimeError(
                    f"token-auth registry did not start; log:\n{log_path.read_text()[-3000:]}"
                ) from None
            clock.sleep(0.1)
    try:
        yield TokenRegistry(url, f"127.0.0.1:{port}", username, password, requests_seen)
    finally:
        process.terminate()
        process.wait(timeout=10)
        token_server.shutdown()
