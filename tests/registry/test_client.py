"""RegistryClient against a real registry: blobs, mounts, manifests, auth, classified errors."""

from __future__ import annotations

import json
import os
import socket

import pytest

from qa_operator.registry.client import (
    DOCKER_MANIFEST,
    OCI_MANIFEST,
    RegistryClient,
    RegistryError,
    RegistryNotFound,
    RegistryUnauthorized,
    RegistryUnreachable,
    sha256_digest,
)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("size", [100, 3500], ids=["monolithic", "chunked"])
def test_blob_upload_then_head_and_get(oci_registry, size):
    client = RegistryClient(oci_registry.url, chunk_size=1000)
    blob = os.urandom(size)
    digest = sha256_digest(blob)
    assert client.blob_size("c/blobs", digest) is None

    client.upload_blob("c/blobs", digest, blob)

    assert client.bytes_uploaded == size
    assert client.blob_size("c/blobs", digest) == size
    assert client.get_blob("c/blobs", digest) == blob


def test_upload_with_a_wrong_digest_is_refused_and_leaves_no_blob(oci_registry):
    client = RegistryClient(oci_registry.url)
    wrong = sha256_digest(b"something else")
    with pytest.raises(RegistryError) as caught:
        client.upload_blob("c/wrong", wrong, b"payload")
    assert type(caught.value) is RegistryError
    assert caught.value.status == 400
    assert "DIGEST_INVALID" in str(caught.value)
    assert not client.blob_exists("c/wrong", wrong)


def test_cross_repository_mount(oci_registry):
    client = RegistryClient(oci_registry.url)
    blob = b"shared layer"
    digest = sha256_digest(blob)
    client.upload_blob("c/from", digest, blob)
    before = client.bytes_uploaded

    assert client.mount_blob("c/to", digest, "c/from") is True

    assert client.bytes_uploaded == before
    assert client.get_blob("c/to", digest) == blob


def test_mount_of_an_unknown_blob_falls_back_without_leaking(oci_registry):
    client = RegistryClient(oci_registry.url)
    assert client.mount_blob("c/to2", sha256_digest(b"nowhere"), "c/from2") is False


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_manifest_put_get_by_tag_and_digest(oci_registry, media_type):
    client = RegistryClient(oci_registry.url)
    config = b"{}"
    client.upload_blob("c/m", sha256_digest(config), config)
    config_type = (
        "application/vnd.oci.image.config.v1+json"
        if media_type == OCI_MANIFEST
        else "application/vnd.docker.container.image.v1+json"
    )
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": {"mediaType": config_type, "digest": sha256_digest(config), "size": 2},
            "layers": [],
        }
    ).encode()

    digest = client.put_manifest("c/m", "v1", body, media_type)

    assert digest == sha256_digest(body)
    assert client.manifest_digest("c/m", "v1") == digest
    for reference in ("v1", digest):
        manifest = client.get_manifest("c/m", reference)
        assert (manifest.media_type, manifest.body, manifest.digest) == (media_type, body, digest)


def test_delete_manifest_by_digest_removes_it_and_its_tag(oci_registry):
    client = RegistryClient(oci_registry.url)
    config = b"{}"
    client.upload_blob("c/del", sha256_digest(config), config)
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(config),
                "size": 2,
            },
            "layers": [],
        }
    ).encode()
    digest = client.put_manifest("c/del", "pkg-0123456789ab", body, OCI_MANIFEST)

    assert client.delete_manifest("c/del", digest) is True

    assert client.manifest_digest("c/del", digest) is None
    assert client.manifest_digest("c/del", "pkg-0123456789ab") is None
    assert client.delete_manifest("c/del", digest) is False


def test_missing_things_are_classified_not_found(oci_registry):
    client = RegistryClient(oci_registry.url)
    with pytest.raises(RegistryNotFound):
        client.get_manifest("c/none", "latest")
    with pytest.raises(RegistryNotFound):
        client.get_blob("c/none", sha256_digest(b"x"))
    assert client.manifest_digest("c/none", "latest") is None


def test_unreachable_registry_is_classified():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # free now, and nothing listens once closed
    client = RegistryClient(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(RegistryUnreachable, match=str(port)):
        client.ping()
    with pytest.raises(RegistryUnreachable):
        client.blob_exists("any/repo", sha256_digest(b"x"))


def test_basic_auth_with_good_credentials(oci_registry_with_auth):
    client = RegistryClient(
        oci_registry_with_auth.url,
        username=oci_registry_with_auth.username,
        password=oci_registry_with_auth.password,
    )
    client.ping()
    blob = b"authenticated"
    client.upload_blob("c/auth", sha256_digest(blob), blob)
    assert client.get_blob("c/auth", sha256_digest(blob)) == blob


@pytest.mark.parametrize("credentials", [None, ("wrong", "credentials")], ids=["none", "bad"])
def test_missing_or_bad_credentials_are_classified_unauthorized(
    oci_registry_with_auth, credentials
):
    username, password = credentials or (None, None)
    client = RegistryClient(oci_registry_with_auth.url, username=username, password=password)
    with pytest.raises(RegistryUnauthorized) as caught:
        client.blob_exists("c/auth", sha256_digest(b"x"))
    assert caught.value.status == 401
    with pytest.raises(RegistryUnauthorized):
        client.upload_blob("c/auth", sha256_digest(b"x"), b"x")


def test_bearer_token_flow(token_registry):
    client = RegistryClient(
        token_registry.url, username=token_registry.username, password=token_registry.password
    )
    blob = b"behind a token service"
    digest = sha256_digest(blob)

    client.upload_blob("c/bearer", digest, blob)
    assert client.get_blob("c/bearer", digest) == blob

    granted = [
        set(query["scope"].rpartition(":")[2].split(","))
        for query in token_registry.token_requests
        if query.get("scope", "").startswith("repository:c/bearer:")
    ]
    assert {"pull", "push"} in granted
    assert all(q.get("service") == "qa-test-registry" for q in token_registry.token_requests)


def test_bearer_token_service_refusing_is_classified_unauthorized(token_registry):
    client = RegistryClient(token_registry.url, username="intruder", password="guess")
    with pytest.raises(RegistryUnauthorized, match="token service"):
        client.blob_exists("c/bearer", sha256_digest(b"x"))
