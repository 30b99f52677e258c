"""The base image: resolved by reference, its layers made present in the target repository,
and the few facts the builder needs read from those layers on the way (see overlay.py).

Blobs are copied as publish_image does: skipped when the target has them, mounted when base and
target share a registry, downloaded and uploaded otherwise. A layer that must be read anyway
(the facts are not cached yet) is downloaded once for both reading and uploading.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import tarfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from qa_operator.imagebuild.imageconfig import DOCKER_LAYER, Descriptor
from qa_operator.imagebuild.overlay import EntryKind, LayerEntry, Overlay
from qa_operator.imagebuild.results import LayerReport
from qa_operator.registry.client import INDEX_MEDIA_TYPES, Manifest, RegistryClient, RegistryError
from qa_operator.registry.images import (
    PLATFORM,
    Reference,
    UnsupportedImage,
    as_docker_v2,
)

log = logging.getLogger(__name__)

_GZIP_MAGIC = b"\x1f\x8b"
# Docker Hub's registry API does not live at the host its references name.
_REGISTRY_ALIASES = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}


@dataclass(frozen=True)
class BaseImage:
    repository: str
    manifest: Manifest  # Docker v2 schema 2 (an OCI base converted: same blobs)
    config: dict[str, Any]
    layers: tuple[Descriptor, ...]

    @property
    def diff_ids(self) -> list[str]:
        return list(self.config.get("rootfs", {}).get("diff_ids", []))


def registry_url(host: str) -> str:
    """The URL a reference's host is reached at: http for loopback, https otherwise."""
    local = host.split(":", maxsplit=1)[0] in ("localhost", "127.0.0.1", "[::1]")
    return f"{'http' if local else 'https'}://{_REGISTRY_ALIASES.get(host, host)}"


@contextlib.contextmanager
def base_source(
    client: RegistryClient, reference: Reference, base_client: RegistryClient | None
) -> Iterator[RegistryClient]:
    """The client that reads the base: `base_client`, else `client` when the reference names no
    other host, else an anonymous client for that host (closed afterwards)."""
    if base_client is not None:
        yield base_client
    elif reference.host is None or reference.host == client.host:
        yield client
    else:
        anonymous = RegistryClient(registry_url(reference.host), image_host=reference.host)
        try:
            yield anonymous
        finally:
            anonymous.close()


def resolve_base(source: RegistryClient, reference: Reference) -> BaseImage:
    """The linux/amd64 image `reference` names, as Docker v2 with gzip tar layers only."""
    name = f"base image {reference.repository}:{reference.reference}"
    manifest = source.get_manifest(reference.repository, reference.reference)
    if manifest.media_type in INDEX_MEDIA_TYPES:
        manifest = _platform_manifest(source, reference, manifest)
    manifest = as_docker_v2(manifest, name)
    body = manifest.json()
    layers = []
    for descriptor in body.get("layers", []):
        if descriptor.get("mediaType") != DOCKER_LAYER:
            raise UnsupportedImage(
                f"{name} has a layer of type {descriptor.get('mediaType')!r}; the builder needs "
                "gzip tar layers (rebuild or re-push the base without zstd or foreign layers)"
            )
        layers.append(Descriptor(descriptor["digest"], int(descriptor["size"])))
    config = json.loads(source.get_blob(reference.repository, body["config"]["digest"]))
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if len(diff_ids) != len(layers):
        raise RegistryError(f"{name}: {len(layers)} layers but {len(diff_ids)} diff_ids")
    return BaseImage(reference.repository, manifest, config, tuple(layers))


def _platform_manifest(source: RegistryClient, reference: Reference, index: Manifest) -> Manifest:
    for entry in index.json().get("manifests", []):
        platform = entry.get("platform") or {}
        if all(platform.get(key) == value for key, value in PLATFORM.items()):
            return source.get_manifest(reference.repository, entry["digest"])
    raise RegistryError(
        f"{reference.repository}:{reference.reference} has no linux/amd64 image in its index"
    )


@dataclass(frozen=True)
class BaseFacts:
    """What the builder reads from the base image's layers."""

    python: str | None  # the CPython the venv links to, e.g. /usr/local/bin/python3.11
    passwd: bytes | None
    group: bytes | None

    @classmethod
    def from_overlay(cls, overlay: Overlay, interpreter_candidates: tuple[str, ...]) -> BaseFacts:
        return cls(
            python=overlay.first_present(interpreter_candidates),
            passwd=overlay.content("etc/passwd"),
            group=overlay.content("etc/group"),
        )

    def as_json(self) -> dict[str, Any]:
        def encode(content: bytes | None) -> str | None:
            return None if content is None else base64.b64encode(content).decode()

        return {"python": self.python, "passwd": encode(self.passwd), "group": encode(self.group)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BaseFacts:
        def decode(text: str | None) -> bytes | None:
            return None if text is None else base64.b64decode(text)

        return cls(data["python"], decode(data["passwd"]), decode(data["group"]))


def facts_overlay(interpreter_candidates: tuple[str, ...]) -> Overlay:
    return Overlay(("etc/passwd", "etc/group", *interpreter_candidates))


_KINDS: dict[bytes, EntryKind] = {
    tarfile.REGTYPE: "file",
    tarfile.AREGTYPE: "file",
    tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink",
    tarfile.LNKTYPE: "hardlink",
}


def read_layer(blob: IO[bytes], overlay: Overlay, name: str) -> None:
    """Apply one gzip tar layer to `overlay`, reading the content of the files it wants."""
    if blob.read(2) != _GZIP_MAGIC:
        raise UnsupportedImage(f"{name} is not gzip-compressed; the builder needs gzip tar layers")
    blob.seek(0)

    def entries(tar: tarfile.TarFile) -> Iterator[LayerEntry]:
        for member in tar:
            kind = _KINDS.get(member.type, "other")
            content = None
            if kind == "file" and overlay.wants(member.name):
                handle = tar.extractfile(member)
                content = handle.read() if handle is not None else None
            yield LayerEntry(member.name, kind, content)

    try:
        with tarfile.open(fileobj=blob, mode="r|gz") as tar:
            overlay.apply(entries(tar))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsupportedImage(f"{name} is not a readable gzip tar: {exc}") from exc


def copy_base_layers(
    source: RegistryClient,
    target: RegistryClient,
    repository: str,
    base: BaseImage,
    overlay: Overlay | None,
) -> list[LayerReport]:
    """Make every base layer present in `repository`; read each into `overlay` when given."""
    reports = []
    same_registry = source is target
    for index, (layer, diff_id) in enumerate(zip(base.layers, base.diff_ids, strict=True)):
        started = time.monotonic()
        uploaded_before = target.bytes_uploaded
        name = f"base layer {index} ({layer.digest})"
        present = target.blob_exists(repository, layer.digest)
        if not present and same_registry and base.repository != repository:
            present = target.mount_blob(repository, layer.digest, base.repository)
        if present and overlay is not None:
            with target.download_blob(repository, layer.digest) as blob:
                read_layer(blob, overlay, name)
        elif not present:
            with source.download_blob(base.repository, layer.digest) as blob:
                if overlay is not None:
                    read_layer(blob, overlay, name)
                blob.seek(0)
                target.upload_blob(repository, layer.digest, blob, layer.size)
        reports.append(
            LayerReport(
                name=f"base/{index}",
                digest=layer.digest,
                diff_id=diff_id,
                size=layer.size,
                bytes_uploaded=target.bytes_uploaded - uploaded_before,
                origin="base",
                seconds=time.monotonic() - started,
            )
        )
    return reports
