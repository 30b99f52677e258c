"""Synthetic OCI images for tests: push a small base image, pull an image back apart."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

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
        layers_files: list[dict[str, bytes]] | None = None,
    ) -> BaseImage:
        """Push a base image with a serving runtime config; `layers_files` (name -> content per
        layer) replaces the two small default layers, e.g. with large ones for a benchmark."""
        layers = [_tar_gz(files) for files in layers_files or BASE_LAYERS]
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
