"""The OCI registry peer (Debian's distribution 2.8), exercised over plain HTTP with `requests`."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import pytest
import requests

from support.registry import Registry

pytestmark = pytest.mark.e2e

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def absolute(registry: Registry, location: str) -> str:
    return location if location.startswith("http") else registry.url + location


def push_monolithic(registry: Registry, repo: str, data: bytes) -> str:
    """POST to open an upload session, then one PUT with the whole blob."""
    started = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", auth=registry.auth)
    assert started.status_code == 202, started.text
    digest = digest_of(data)
    done = requests.put(
        absolute(registry, started.headers["Location"]),
        params={"digest": digest},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
        auth=registry.auth,
    )
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest
    return digest


def push_chunked(registry: Registry, repo: str, data: bytes, chunk: int) -> str:
    """POST, then PATCH each chunk with its Content-Range, then PUT the digest."""
    response = requests.post(f"{registry.url}/v2/{repo}/blobs/uploads/", auth=registry.auth)
    assert response.status_code == 202, response.text
    for start in range(0, len(data), chunk):
        part = data[start : start + chunk]
        response = requests.patch(
            absolute(registry, response.headers["Location"]),
            data=part,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{start}-{start + len(part) - 1}",
            },
            auth=registry.auth,
        )
        assert response.status_code == 202, response.text
        assert response.headers["Range"] == f"0-{start + len(part) - 1}"
    digest = digest_of(data)
    done = requests.put(
        absolute(registry, response.headers["Location"]),
        params={"digest": digest},
        auth=registry.auth,
    )
    assert done.status_code == 201, done.text
    return digest


def read_blob(registry: Registry, repo: str, digest: str) -> bytes:
    response = requests.get(f"{registry.url}/v2/{repo}/blobs/{digest}", auth=registry.auth)
    assert response.status_code == 200, response.text
    return response.content


def tiny_layer() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        payload = b"print('hello from a layer')\n"
        info = tarfile.TarInfo("app/hello.py")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return gzip.compress(raw.getvalue(), mtime=0)


def test_registry_speaks_the_distribution_api(oci_registry: Registry) -> None:
    response = requests.get(f"{oci_registry.url}/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    assert oci_registry.host == oci_registry.url.removeprefix("http://")
    assert oci_registry.log_path.read_text()  # it logs where the README says


def test_blob_monolithic_and_chunked_uploads_read_back(oci_registry: Registry) -> None:
    small = b'{"hello": "registry"}'
    large = bytes(range(256)) * 4096 + b"tail"  # 1 MiB and a bit, in 300 KiB chunks
    small_digest = push_monolithic(oci_registry, "harness/blobs", small)
    large_digest = push_chunked(oci_registry, "harness/blobs", large, chunk=300 * 1024)
    assert read_blob(oci_registry, "harness/blobs", small_digest) == small
    assert read_blob(oci_registry, "harness/blobs", large_digest) == large
    head = requests.head(f"{oci_registry.url}/v2/harness/blobs/blobs/{large_digest}")
    assert head.status_code == 200
    assert int(head.headers["Content-Length"]) == len(large)
    # Filesystem storage, where the fixture says it is.
    stored = oci_registry.storage_dir / "docker/registry/v2/blobs/sha256"
    assert (stored / large_digest[7:9] / large_digest[7:] / "data").read_bytes() == large
    missing = requests.get(f"{oci_registry.url}/v2/harness/blobs/blobs/{digest_of(b'nope')}")
    assert missing.status_code == 404


def test_oci_manifest_push_read_back_and_delete(oci_registry: Registry) -> None:
    repo = "harness/qa-model"
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    layer = tiny_layer()
    config_digest = push_monolithic(oci_registry, repo, config)
    layer_digest = push_monolithic(oci_registry, repo, layer)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest, "size": len(layer)}],
        },
        sort_keys=True,
    ).encode()
    put = requests.put(
        f"{oci_registry.url}/v2/{repo}/manifests/v1",
        data=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == digest_of(manifest)

    for reference in ("v1", digest_of(manifest)):
        got = requests.get(
            f"{oci_registry.url}/v2/{repo}/manifests/{reference}",
            headers={"Accept": OCI_MANIFEST},
        )
        assert got.status_code == 200
        assert got.headers["Content-Type"] == OCI_MANIFEST
        assert got.content == manifest  # byte for byte: the digest must hold
    tags = requests.get(f"{oci_registry.url}/v2/{repo}/tags/list").json()
    assert tags == {"name": repo, "tags": ["v1"]}

    # A manifest that names a blob the registry lacks is refused.
    broken = manifest.replace(layer_digest.encode(), digest_of(b"absent").encode())
    refused = requests.put(
        f"{oci_registry.url}/v2/{repo}/manifests/broken",
        data=broken,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"

    deleted = requests.delete(f"{oci_registry.url}/v2/{repo}/manifests/{digest_of(manifest)}")
    assert deleted.status_code == 202  # deletes are enabled in our config
    gone = requests.get(f"{oci_registry.url}/v2/{repo}/manifests/v1")
    assert gone.status_code == 404


def test_auth_registry_rejects_bad_credentials(oci_registry_with_auth: Registry) -> None:
    registry = oci_registry_with_auth
    assert registry.username
    assert registry.password
    anonymous = requests.get(f"{registry.url}/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    wrong = requests.get(f"{registry.url}/v2/", auth=(registry.username, "not-the-password"))
    assert wrong.status_code == 401
    refused = requests.post(
        f"{registry.url}/v2/harness/private/blobs/uploads/", auth=("nobody", registry.password)
    )
    assert refused.status_code == 401
    data = b"only for authorised eyes"
    digest = push_monolithic(registry, "harness/private", data)
    assert read_blob(registry, "harness/private", digest) == data
    assert requests.get(f"{registry.url}/v2/harness/private/blobs/{digest}").status_code == 401
