"""Publishing the serving image straight through the registry API: no Docker daemon involved.

Two modes:
- "s3": the base serving image is copied into the target repository (when not there already)
  and used as is; SageMaker fetches the model from S3 into /opt/ml/model.
- "baked": one layer holding the MLflow package at /opt/ml/model is appended to the base image,
  giving a self-contained image tagged by the package digest.

What is written is always a Docker v2 schema 2 image, whatever the base uses: SageMaker's
CreateModel refuses OCI manifests. An OCI base is converted (same config and layer blobs, Docker
media types); a base whose layers have no Docker equivalent is refused with UnsupportedImage.

Every step checks before it writes (blob HEAD, manifest HEAD), and the manifest is written last,
so a second run uploads nothing and a run interrupted half-way leaves no reference to a missing
blob: the next run simply uploads what is still absent.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from qa_operator.registry.client import (
    DOCKER_MANIFEST,
    INDEX_MEDIA_TYPES,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    RegistryError,
    sha256_digest,
)
from qa_operator.registry.layers import Layer, build_directory_layer

MODEL_DIR = "opt/ml/model"
PLATFORM = {"os": "linux", "architecture": "amd64"}

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
# Docker v2 equivalents of OCI descriptor media types: same bytes, another name.
_DOCKER_EQUIVALENT = {
    "application/vnd.oci.image.config.v1+json": DOCKER_CONFIG,
    "application/vnd.oci.image.layer.v1.tar+gzip": DOCKER_LAYER,
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": DOCKER_FOREIGN_LAYER,
    DOCKER_CONFIG: DOCKER_CONFIG,
    DOCKER_LAYER: DOCKER_LAYER,
    DOCKER_FOREIGN_LAYER: DOCKER_FOREIGN_LAYER,
}
# Fields of OCI manifests and descriptors that Docker v2 schema 2 does not define.
_OCI_ONLY_FIELDS = ("annotations", "subject", "artifactType")


class UnsupportedImage(RegistryError):
    """The image cannot be written as Docker v2 schema 2 (e.g. zstd or uncompressed layers)."""


@dataclass(frozen=True)
class ImageRef:
    uri: str  # "<host>/<repo>@sha256:<hex>"  (SageMaker Model uses the image by digest)
    digest: str  # "sha256:<hex>" manifest digest
    tag: str | None


@dataclass(frozen=True)
class Reference:
    """A parsed image reference: [host/]repository(:tag | @digest)."""

    host: str | None
    repository: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one (it pins), else the tag."""
        return self.digest or self.tag or "latest"


def parse_reference(text: str) -> Reference:
    rest, _, digest = text.partition("@")
    first, slash, remainder = rest.partition("/")
    host: str | None = None
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, remainder
    name, tag = rest, None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        name, _, tag = rest.rpartition(":")
    if not name:
        raise ValueError(f"{text!r} has no repository name")
    if digest and not digest.startswith("sha256:"):
        raise ValueError(f"{text!r}: only sha256 digests are supported")
    if not digest and not tag:
        tag = "latest"
    return Reference(host=host, repository=name, tag=tag, digest=digest or None)


def package_tag(package_digest: str, owner: str | None = None) -> str:
    """The tag of a baked image: `pkg-` and the first 12 hex digits of the package digest, then
    (for an owner's own image) `-` and the first 12 characters of the owner's hashed id."""
    tag = "pkg-" + package_digest.removeprefix("sha256:")[:12]
    if owner is None:
        return tag
    return f"{tag}-{hashlib.sha256(owner.encode()).hexdigest()[:12]}"


def publish_image(
    client: RegistryClient,
    *,
    base: str,
    target_repository: str,
    mode: Literal["s3", "baked"],
    package_dir: Path | None = None,
    package_digest: str | None = None,
    source: RegistryClient | None = None,
    owner: str | None = None,
) -> ImageRef:
    """Make the serving image available in `target_repository` on `client`'s registry.

    `base` names the serving image ("host/repo:tag" or "host/repo@sha256:..."); when its host is
    not `client`'s, `source` is the client used to read it (an anonymous one when None).
    In "baked" mode `package_dir` is required and `package_digest` (from the packager) names the
    tag; when it is None, the model layer's content digest is used instead. A baked image with an
    `owner` (the operator passes the resource's uid) is that owner's alone: its tag and its config
    name the owner, so the same package baked for two owners gives two images, and deleting one
    never deletes the other's.
    """
    if mode not in ("s3", "baked"):
        raise ValueError(f"mode must be 's3' or 'baked', not {mode!r}")
    if mode == "baked" and package_dir is None:
        raise ValueError("mode 'baked' needs package_dir")
    ref = parse_reference(base)
    if ref.host is None or ref.host == client.host:
        source = client
    elif source is None:
        anonymous = RegistryClient(_default_url(ref.host))
        try:
            return publish_image(
                client,
                base=base,
                target_repository=target_repository,
                mode=mode,
                package_dir=package_dir,
                package_digest=package_digest,
                source=anonymous,
                owner=owner,
            )
        finally:
            anonymous.close()

    manifest = as_docker_v2(_single_platform_manifest(source, ref), base)
    _copy_blobs(source, ref.repository, client, target_repository, _blob_digests(manifest))
    base_tag = ref.tag if ref.tag else None
    _put_manifest_if_changed(client, target_repository, base_tag or manifest.digest, manifest)
    if mode == "s3":
        return _image_ref(client, target_repository, manifest.digest, base_tag)

    assert package_dir is not None
    if package_digest is not None:
        done = _already_baked(
            client, target_repository, package_tag(package_digest, owner), manifest
        )
        if done is not None:
            return done
    workdir = Path(tempfile.mkdtemp(prefix="qa-image-"))
    try:
        layer = build_directory_layer(package_dir, MODEL_DIR, workdir)
        tag = package_tag(package_digest or layer.diff_id, owner)
        for_owner = f" for {tag.rsplit('-', 1)[-1]}" if owner is not None else ""
        baked = append_layer(
            client,
            target_repository,
            manifest,
            layer,
            created_by=f"qa-operator: model package {layer.diff_id} at /{MODEL_DIR}{for_owner}",
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _put_manifest_if_changed(client, target_repository, tag, baked)
    return _image_ref(client, target_repository, baked.digest, tag)


def _already_baked(
    client: RegistryClient, repository: str, tag: str, base: Manifest
) -> ImageRef | None:
    """The image a previous run baked for this package on this base, if the tag holds one.

    The tag is written only after every blob is in place, so its presence means a complete
    image; checking its base layers guards against a tag left from a different base image.
    """
    digest = client.manifest_digest(repository, tag)
    if digest is None:
        return None
    existing = client.get_manifest(repository, digest).json()
    base_layers = base.json().get("layers", [])
    if existing.get("layers", [])[: len(base_layers)] != base_layers:
        return None
    if len(existing.get("layers", [])) != len(base_layers) + 1:
        return None
    return _image_ref(client, repository, digest, tag)


def _default_url(host: str) -> str:
    local = host.split(":", maxsplit=1)[0] in ("localhost", "127.0.0.1", "[::1]")
    return f"{'http' if local else 'https'}://{host}"


def _image_ref(client: RegistryClient, repository: str, digest: str, tag: str | None) -> ImageRef:
    return ImageRef(uri=f"{client.host}/{repository}@{digest}", digest=digest, tag=tag)


def _single_platform_manifest(client: RegistryClient, ref: Reference) -> Manifest:
    """The image manifest for linux/amd64, following an index when the reference names one."""
    manifest = client.get_manifest(ref.repository, ref.reference)
    if manifest.media_type not in INDEX_MEDIA_TYPES:
        return manifest
    for entry in manifest.json().get("manifests", []):
        platform = entry.get("platform") or {}
        if all(platform.get(key) == value for key, value in PLATFORM.items()):
            return client.get_manifest(ref.repository, entry["digest"])
    raise RegistryError(f"{ref.repository}:{ref.reference} has no linux/amd64 image in its index")


def as_docker_v2(manifest: Manifest, name: str = "the image") -> Manifest:
    """The same image as a Docker v2 schema 2 manifest, which SageMaker accepts.

    A Docker v2 manifest comes back as it is (same bytes, same digest). An OCI one keeps its
    config and layer blobs and changes only descriptor media types; OCI-only fields go. Raises
    UnsupportedImage for anything else, naming the first media type without a Docker equivalent.
    """
    if manifest.media_type == DOCKER_MANIFEST:
        return manifest
    if manifest.media_type != OCI_MANIFEST:
        raise UnsupportedImage(
            f"{name} is a {manifest.media_type!r}; expected an OCI or Docker v2 image manifest"
        )
    body = manifest.json()
    converted: dict[str, Any] = {
        key: value for key, value in body.items() if key not in _OCI_ONLY_FIELDS
    }
    converted["mediaType"] = DOCKER_MANIFEST
    converted["config"] = _docker_descriptor(body["config"], name)
    converted["layers"] = [_docker_descriptor(layer, name) for layer in body.get("layers", [])]
    data = _canonical(converted)
    return Manifest(media_type=DOCKER_MANIFEST, body=data, digest=sha256_digest(data))


def _docker_descriptor(descriptor: dict[str, Any], name: str) -> dict[str, Any]:
    media_type = descriptor.get("mediaType", "")
    docker_type = _DOCKER_EQUIVALENT.get(media_type)
    if docker_type is None:
        raise UnsupportedImage(
            f"{name} has a blob of type {media_type!r}, which Docker v2 schema 2 (the only "
            "manifest SageMaker accepts) cannot carry; rebuild the image with gzip layers"
        )
    kept = {key: value for key, value in descriptor.items() if key not in _OCI_ONLY_FIELDS}
    return kept | {"mediaType": docker_type}


def _blob_digests(manifest: Manifest) -> list[str]:
    body = manifest.json()
    return [body["config"]["digest"], *(layer["digest"] for layer in body.get("layers", []))]


def _copy_blobs(
    source: RegistryClient,
    source_repository: str,
    target: RegistryClient,
    target_repository: str,
    digests: list[str],
) -> None:
    """Make every blob present in the target: skip, mount, or download-and-upload, in that order."""
    same_registry = source is target
    for digest in digests:
        if target.blob_exists(target_repository, digest):
            continue
        if same_registry:
            if source_repository == target_repository:
                raise RegistryError(f"{target_repository} lacks blob {digest} of its own image")
            if target.mount_blob(target_repository, digest, source_repository):
                continue
        with source.download_blob(source_repository, digest) as blob:
            size = blob.seek(0, 2)
            blob.seek(0)
            target.upload_blob(target_repository, digest, blob, size)


def _put_manifest_if_changed(
    client: RegistryClient, repository: str, reference: str, manifest: Manifest
) -> None:
    if client.manifest_digest(repository, reference) == manifest.digest:
        return
    client.put_manifest(repository, reference, manifest.body, manifest.media_type)


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def append_layer(
    client: RegistryClient,
    repository: str,
    base: Manifest,
    layer: Layer,
    *,
    created_by: str,
) -> Manifest:
    """Upload `layer` and a config extending the base's, and return (not push) the new manifest.

    The base config's runtime settings (entrypoint, cmd, env, exposed ports, user, workdir) are
    kept as they are; only rootfs.diff_ids and history grow. The base's blobs must already be in
    `repository`. The result is Docker v2 schema 2 whatever the base is (see as_docker_v2).
    """
    base = as_docker_v2(base)
    base_body = base.json()
    config = json.loads(client.get_blob(repository, base_body["config"]["digest"]))
    config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    config["rootfs"]["diff_ids"] = [*config["rootfs"].get("diff_ids", []), layer.diff_id]
    history_entry: dict[str, Any] = {"created_by": created_by, "comment": "qa-operator"}
    if "created" in config:
        history_entry["created"] = config["created"]  # reproducible: no wall clock in the image
    config["history"] = [*config.get("history", []), history_entry]
    config_body = _canonical(config)
    config_digest = sha256_digest(config_body)

    if not client.blob_exists(repository, layer.digest):
        with layer.open() as handle:
            client.upload_blob(repository, layer.digest, handle, layer.size)
    if not client.blob_exists(repository, config_digest):
        client.upload_blob(repository, config_digest, config_body)

    manifest = dict(base_body)
    manifest["config"] = {
        **base_body["config"],
        "digest": config_digest,
        "size": len(config_body),
    }
    manifest["layers"] = [
        *base_body.get("layers", []),
        {"mediaType": DOCKER_LAYER, "digest": layer.digest, "size": layer.size},
    ]
    manifest.pop("annotations", None)  # the base's annotations describe the base, not this image
    manifest["mediaType"] = DOCKER_MANIFEST
    body = _canonical(manifest)
    return Manifest(media_type=DOCKER_MANIFEST, body=body, digest=sha256_digest(body))
