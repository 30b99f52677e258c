"""Helpers for the registry tests: synthetic base images, image unpacking, a fault proxy.

They are fixtures (not importable helpers) because tests/ has no packages.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from qa_operator.registry.client import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    sha256_digest,
)

_LAYER = {
    OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip",
    DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
}
_CONFIG = {
    OCI_MANIFEST: "application/vnd.oci.image.config.v1+json",
    DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json",
}

BASE_LAYERS: list[dict[str, bytes]] = [
    {"etc/os-release": b"NAME=synthetic\n", "usr/local/bin/serve": b"#!/bin/sh\necho serve\n"},
    {"app/main.py": b"print('hello')\n", "opt/ml/.keep": b""},
]
BASE_RUNTIME: dict[str, Any] = {
    "Entrypoint": ["python", "-m", "qa_operator.model.serving"],
    "Cmd": ["serve"],
    "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "SAGEMAKER_BIND_TO_PORT=8080"],
    "ExposedPorts": {"8080/tcp": {}},
    "User": "1000",
    "WorkingDir": "/app",
}


def _tar_gz(files: dict[str, bytes]) -> tuple[bytes, str]:
    """A layer from a name->content map: (gzipped bytes, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o755 if content.startswith(b"#!") else 0o644
            tar.addfile(info, io.BytesIO(content))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), sha256_digest(uncompressed)


@dataclass
class BaseImage:
    repository: str
    tag: str
    digest: str  # what the tag points at (an index digest when pushed as an index)
    image_digest: str  # the single-platform manifest's digest
    media_type: str
    config: dict[str, Any]
    layer_digests: list[str] = field(default_factory=list)


@dataclass
class PulledImage:
    manifest: dict[str, Any]
    media_type: str
    config: dict[str, Any]
    files: dict[str, bytes]  # path -> content after applying every layer
    modes: dict[str, int]
    layer_diff_ids: list[str]  # recomputed from the layer blobs


class Images:
    """Pushes synthetic base images and pulls images back apart."""

    def push_base(
        self,
        client: RegistryClient,
        repository: str,
        tag: str = "base",
        *,
        media_type: str = OCI_MANIFEST,
        as_index: bool = False,
    ) -> BaseImage:
        layers = [_tar_gz(files) for files in BASE_LAYERS]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": BASE_RUNTIME,
            "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
            "history": [{"created_by": f"synthetic layer {i}"} for i in range(len(layers))],
        }
        config_body = json.dumps(config).encode()
        for blob in [config_body, *(gz for gz, _ in layers)]:
            client.upload_blob(repository, sha256_digest(blob), blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": _CONFIG[media_type],
                "digest": sha256_digest(config_body),
                "size": len(config_body),
            },
            "layers": [
                {"mediaType": _LAYER[media_type], "digest": sha256_digest(gz), "size": len(gz)}
                for gz, _ in layers
            ],
        }
        body = json.dumps(manifest, indent=2).encode()  # not canonical on purpose: bytes matter
        image_digest = sha256_digest(body)
        digest = image_digest
        if as_index:
            client.put_manifest(repository, image_digest, body, media_type)
            other = self._arm64_image(client, repository, media_type)
            index = {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    other,
                    {
                        "mediaType": media_type,
                        "digest": image_digest,
                        "size": len(body),
                        "platform": {"architecture": "amd64", "os": "linux"},
                    },
                ],
            }
            index_body = json.dumps(index).encode()
            digest = client.put_manifest(repository, tag, index_body, OCI_INDEX)
        else:
            client.put_manifest(repository, tag, body, media_type)
        return BaseImage(
            repository=repository,
            tag=tag,
            digest=digest,
            image_digest=image_digest,
            media_type=media_type,
            config=config,
            layer_digests=[sha256_digest(gz) for gz, _ in layers],
        )

    def _arm64_image(
        self, client: RegistryClient, repository: str, media_type: str
    ) -> dict[str, Any]:
        """A decoy arm64 image, so that picking the wrong index entry shows."""
        gz, diff_id = _tar_gz({"etc/arch": b"arm64\n"})
        config = json.dumps(
            {
                "architecture": "arm64",
                "os": "linux",
                "config": {"Cmd": ["wrong"]},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ).encode()
        for blob in (gz, config):
            client.upload_blob(repository, sha256_digest(blob), blob)
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": {
                    "mediaType": _CONFIG[media_type],
                    "digest": sha256_digest(config),
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": _LAYER[media_type], "digest": sha256_digest(gz), "size": len(gz)}
                ],
            }
        ).encode()
        digest = client.put_manifest(repository, sha256_digest(body), body, media_type)
        return {
            "mediaType": media_type,
            "digest": digest,
            "size": len(body),
            "platform": {"architecture": "arm64", "os": "linux"},
        }

    def pull(self, client: RegistryClient, repository: str, reference: str) -> PulledImage:
        manifest = client.get_manifest(repository, reference)
        body = manifest.json()
        config = json.loads(client.get_blob(repository, body["config"]["digest"]))
        files: dict[str, bytes] = {}
        modes: dict[str, int] = {}
        diff_ids = []
        for layer in body["layers"]:
            blob = client.get_blob(repository, layer["digest"])
            assert len(blob) == layer["size"], f"{layer['digest']}: size in manifest is wrong"
            raw = gzip.decompress(blob)
            diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
            with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
                for member in tar.getmembers():
                    modes[member.name.rstrip("/")] = member.mode
                    if member.isfile():
                        handle = tar.extractfile(member)
                        assert handle is not None
                        files[member.name] = handle.read()
        return PulledImage(
            manifest=body,
            media_type=manifest.media_type,
            config=config,
            files=files,
            modes=modes,
            layer_diff_ids=diff_ids,
        )


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
