"""Hand-made layers (links, whiteouts, escapes) and images for the devstack tests."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qa_operator.registry.client import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    RegistryClient,
    sha256_digest,
)

_CONFIG_TYPE = {
    OCI_MANIFEST: "application/vnd.oci.image.config.v1+json",
    DOCKER_MANIFEST: "application/vnd.docker.container.image.v1+json",
}
_LAYER_TYPE = {
    OCI_MANIFEST: "application/vnd.oci.image.layer.v1.tar+gzip",
    DOCKER_MANIFEST: "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


@dataclass(frozen=True)
class Member:
    """One tar entry: kind is file, dir, symlink or hardlink; target names a link's target."""

    name: str
    data: bytes = b""
    kind: str = "file"
    mode: int = 0o644
    target: str = ""


def tar_bytes(members: Sequence[Member]) -> bytes:
    """An uncompressed layer with the members in the order given (order matters for layers)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.mode = member.mode
            info.mtime = 0
            content = None
            if member.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif member.kind == "symlink":
                info.type = tarfile.SYMTYPE
                info.linkname = member.target
            elif member.kind == "hardlink":
                info.type = tarfile.LNKTYPE
                info.linkname = member.target
            else:
                info.size = len(member.data)
                content = io.BytesIO(member.data)
            tar.addfile(info, content)
    return raw.getvalue()


@dataclass
class PushedImage:
    repository: str
    digest: str
    layer_digests: list[str]

    def reference(self, host: str) -> str:
        return f"{host}/{self.repository}@{self.digest}"


class ImagePusher:
    """Pushes images made of hand-made layers, optionally on top of another image's layers."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client

    def push(
        self,
        repository: str,
        layers: Sequence[bytes],
        *,
        runtime: dict[str, Any] | None = None,
        media_type: str = OCI_MANIFEST,
        base_digest: str | None = None,
        diff_ids: list[str] | None = None,
        config_media_type: str | None = None,
    ) -> PushedImage:
        """`layers` are uncompressed tars; `base_digest` names an image in `repository` whose
        layers (and runtime config, updated by `runtime`) come first."""
        base_layers: list[dict[str, Any]] = []
        base_diff_ids: list[str] = []
        config: dict[str, Any] = {"architecture": "amd64", "os": "linux", "config": {}}
        if base_digest is not None:
            base = self.client.get_manifest(repository, base_digest).json()
            base_layers = base["layers"]
            config = json.loads(self.client.get_blob(repository, base["config"]["digest"]))
            base_diff_ids = config["rootfs"]["diff_ids"]
            base_layers = [{**layer, "mediaType": _LAYER_TYPE[media_type]} for layer in base_layers]
        config["config"] = {**(config.get("config") or {}), **(runtime or {})}
        compressed = [gzip.compress(layer, mtime=0) for layer in layers]
        config["rootfs"] = {
            "type": "layers",
            "diff_ids": diff_ids
            if diff_ids is not None
            else base_diff_ids + [sha256_digest(layer) for layer in layers],
        }
        config_body = json.dumps(config).encode()
        for blob in [config_body, *compressed]:
            digest = sha256_digest(blob)
            if not self.client.blob_exists(repository, digest):
                self.client.upload_blob(repository, digest, blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {
                "mediaType": config_media_type or _CONFIG_TYPE[media_type],
                "digest": sha256_digest(config_body),
                "size": len(config_body),
            },
            "layers": base_layers
            + [
                {"mediaType": _LAYER_TYPE[media_type], "digest": sha256_digest(gz), "size": len(gz)}
                for gz in compressed
            ],
        }
        body = json.dumps(manifest).encode()
        digest = self.client.put_manifest(repository, sha256_digest(body), body, media_type)
        return PushedImage(repository, digest, [sha256_digest(gz) for gz in compressed])
