"""Bases the builder refuses, before it installs anything: clear errors, not broken images."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa_operator.imagebuild import ImageBuildError, build_image
from qa_operator.registry.client import OCI_MANIFEST, RegistryClient, sha256_digest
from qa_operator.registry.images import UnsupportedImage
from support.images import Images

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def client(oci_registry: Any) -> Iterator[RegistryClient]:
    client = RegistryClient(oci_registry.url)
    yield client
    client.close()


def _build(client: RegistryClient, base: str, cache: Path) -> None:
    build_image(
        client,
        recipe="operator",
        base=f"{client.host}/{base}",
        repository="imagebuild/refused",
        project_dir=ROOT,
        cache_dir=cache,
    )


def test_a_base_without_cpython_311_is_refused(client: RegistryClient, tmp_path: Path) -> None:
    Images().push_base(client, "imagebuild/no-python", "x", layers_files=[{"etc/passwd": b""}])
    with pytest.raises(
        ImageBuildError, match=r"usr/local/bin/python3\.11 nor /usr/bin/python3\.11"
    ):
        _build(client, "imagebuild/no-python:x", tmp_path)


def _push_with_layer(client: RegistryClient, repository: str, blob: bytes, media_type: str) -> None:
    client.upload_blob(repository, sha256_digest(blob), blob)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]},
        }
    ).encode()
    client.upload_blob(repository, sha256_digest(config), config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256_digest(config),
            "size": len(config),
        },
        "layers": [{"mediaType": media_type, "digest": sha256_digest(blob), "size": len(blob)}],
    }
    client.put_manifest(repository, "x", json.dumps(manifest).encode(), OCI_MANIFEST)


@pytest.mark.parametrize(
    ("media_type", "blob", "message"),
    [
        ("application/vnd.oci.image.layer.v1.tar+zstd", b"\x28\xb5\x2f\xfdzstd", "zstd"),
        ("application/vnd.oci.image.layer.v1.tar", b"plain tar" + b"\0" * 100, "v1.tar"),
        ("application/vnd.oci.image.layer.v1.tar+gzip", b"not gzip at all", "not gzip"),
    ],
)
def test_a_base_with_layers_other_than_gzip_tar_is_refused(
    client: RegistryClient, tmp_path: Path, media_type: str, blob: bytes, message: str
) -> None:
    repository = f"imagebuild/layers-{message.replace(' ', '-').replace('.', '-')}"
    _push_with_layer(client, repository, blob, media_type)
    with pytest.raises(UnsupportedImage, match=message):
        _build(client, f"{repository}:x", tmp_path)
