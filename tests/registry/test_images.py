"""publish_image against a real registry (Debian's docker-registry on loopback)."""

from __future__ import annotations

import json
import os
import re

import pytest

from qa_operator.registry.client import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    RegistryClient,
    RegistryUnreachable,
    sha256_digest,
)
from qa_operator.registry.images import (
    DOCKER_LAYER,
    ImageRef,
    UnsupportedImage,
    as_docker_v2,
    package_tag,
    publish_image,
)

pytestmark = pytest.mark.e2e

PACKAGE_DIGEST = "sha256:" + "ab" * 32


def test_s3_mode_copies_the_base_unchanged_and_only_once(registry, images):
    base = images.push_base(registry, "serving/base", "1.0", media_type=DOCKER_MANIFEST)

    ref = publish_image(
        registry, base=f"{registry.host}/serving/base:1.0", target_repository="qa/s3", mode="s3"
    )

    assert ref == ImageRef(
        uri=f"{registry.host}/qa/s3@{base.digest}", digest=base.digest, tag="1.0"
    )
    assert registry.manifest_digest("qa/s3", "1.0") == base.digest
    config_digest = registry.get_manifest("qa/s3", "1.0").json()["config"]["digest"]
    for digest in [config_digest, *base.layer_digests]:
        assert registry.blob_exists("qa/s3", digest)

    before = registry.bytes_uploaded
    again = publish_image(
        registry, base=f"{registry.host}/serving/base:1.0", target_repository="qa/s3", mode="s3"
    )
    assert again == ref
    assert registry.bytes_uploaded == before


def test_oci_base_is_written_as_docker_v2_with_the_same_blobs(registry, images):
    base = images.push_base(registry, "serving/base", "oci", media_type=OCI_MANIFEST)

    ref = publish_image(
        registry, base=f"{registry.host}/serving/base:oci", target_repository="qa/o", mode="s3"
    )

    assert ref.digest != base.digest
    written = registry.get_manifest("qa/o", ref.digest)
    assert written.media_type == DOCKER_MANIFEST
    body, original = written.json(), registry.get_manifest("serving/base", "oci").json()
    assert body["mediaType"] == DOCKER_MANIFEST
    assert body["config"] == original["config"] | {
        "mediaType": "application/vnd.docker.container.image.v1+json"
    }
    assert [layer["digest"] for layer in body["layers"]] == base.layer_digests
    assert {layer["mediaType"] for layer in body["layers"]} == {DOCKER_LAYER}
    pulled = images.pull(registry, "qa/o", ref.digest)
    assert pulled.config == base.config
    assert pulled.layer_diff_ids == base.config["rootfs"]["diff_ids"]


CONFIG_BLOB, LAYER_BLOB = b"{}", b"abc"


def _oci_manifest(layer_type: str) -> Manifest:
    body = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256_digest(CONFIG_BLOB),
                "size": len(CONFIG_BLOB),
            },
            "layers": [
                {
                    "mediaType": layer_type,
                    "digest": sha256_digest(LAYER_BLOB),
                    "size": len(LAYER_BLOB),
                }
            ],
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        }
    ).encode()
    return Manifest(media_type=OCI_MANIFEST, body=body, digest=sha256_digest(body))


@pytest.mark.parametrize(
    "layer_type",
    [
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.example.unknown",
    ],
)
def test_layers_without_a_docker_equivalent_are_refused_by_name(layer_type):
    with pytest.raises(UnsupportedImage, match=re.escape(repr(layer_type))):
        as_docker_v2(_oci_manifest(layer_type), "base:1")


def test_conversion_drops_oci_only_fields_and_keeps_docker_manifests_as_they_are():
    converted = as_docker_v2(_oci_manifest("application/vnd.oci.image.layer.v1.tar+gzip"))
    assert "annotations" not in converted.json()
    assert converted.json()["layers"][0]["mediaType"] == DOCKER_LAYER
    assert as_docker_v2(converted) is converted
    index = Manifest(media_type=OCI_INDEX, body=b"{}", digest=sha256_digest(b"{}"))
    with pytest.raises(UnsupportedImage, match="index"):
        as_docker_v2(index)


def test_zstd_base_is_refused_before_anything_is_copied(registry):
    manifest = _oci_manifest("application/vnd.oci.image.layer.v1.tar+zstd")
    # The registry stores a manifest only when its blobs exist: push those two placeholders.
    for blob in (CONFIG_BLOB, LAYER_BLOB):
        registry.upload_blob("serving/zstd", sha256_digest(blob), blob)
    registry.put_manifest("serving/zstd", "1", manifest.body, OCI_MANIFEST)
    before = registry.bytes_uploaded

    with pytest.raises(UnsupportedImage, match="zstd"):
        publish_image(
            registry, base=f"{registry.host}/serving/zstd:1", target_repository="qa/z", mode="s3"
        )
    assert registry.bytes_uploaded == before
    assert registry.manifest_digest("qa/z", "1") is None


def test_same_registry_copy_mounts_instead_of_uploading(registry, images):
    images.push_base(registry, "serving/base", "mount")
    before = registry.bytes_uploaded

    publish_image(
        registry, base=f"{registry.host}/serving/base:mount", target_repository="qa/m", mode="s3"
    )

    manifest = registry.get_manifest("qa/m", "mount")
    # Only the manifest itself travelled; every blob was mounted from serving/base.
    assert registry.bytes_uploaded - before == len(manifest.body)


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, DOCKER_MANIFEST])
def test_baked_image_holds_the_package_and_keeps_the_base_runtime(
    registry, images, model_package, files_of, media_type
):
    base = images.push_base(registry, "serving/base", "b", media_type=media_type)

    ref = publish_image(
        registry,
        base=f"{registry.host}/serving/base:b",
        target_repository="qa/baked",
        mode="baked",
        package_dir=model_package,
        package_digest=PACKAGE_DIGEST,
    )

    assert ref.tag == package_tag(PACKAGE_DIGEST) == "pkg-abababababab"
    assert ref.uri == f"{registry.host}/qa/baked@{ref.digest}"
    assert registry.manifest_digest("qa/baked", ref.tag) == ref.digest
    image = images.pull(registry, "qa/baked", ref.digest)

    # The package, file by file, at /opt/ml/model; the base's files are still there.
    model = {
        path.removeprefix("opt/ml/model/"): content
        for path, content in image.files.items()
        if path.startswith("opt/ml/model/")
    }
    assert model == files_of(model_package)
    assert image.files["app/main.py"] == b"print('hello')\n"
    assert image.modes["opt/ml/model/artifacts/run.sh"] == 0o755
    assert image.modes["opt/ml/model/MLmodel"] == 0o644
    assert "opt/ml/model/empty-dir" in image.modes

    # Runtime settings untouched; one more diff_id and history entry; both match the blobs.
    assert image.config["config"] == base.config["config"]
    assert image.config["rootfs"]["diff_ids"] == image.layer_diff_ids
    assert image.config["rootfs"]["diff_ids"][:2] == base.config["rootfs"]["diff_ids"]
    assert len(image.config["history"]) == len(base.config["history"]) + 1
    assert [layer["digest"] for layer in image.manifest["layers"][:2]] == base.layer_digests

    # Docker v2 schema 2 whatever the base used: SageMaker refuses OCI manifests.
    assert image.media_type == DOCKER_MANIFEST
    assert {layer["mediaType"] for layer in image.manifest["layers"]} == {DOCKER_LAYER}


def test_second_run_uploads_nothing_and_a_model_change_uploads_only_the_model(
    registry, images, model_package
):
    images.push_base(registry, "serving/base", "r")
    base = f"{registry.host}/serving/base:r"
    first = publish_image(
        registry, base=base, target_repository="qa/r", mode="baked", package_dir=model_package
    )

    before = registry.bytes_uploaded
    second = publish_image(
        registry, base=base, target_repository="qa/r", mode="baked", package_dir=model_package
    )
    assert second == first
    assert registry.bytes_uploaded == before

    (model_package / "artifacts" / "model" / "weights.bin").write_bytes(b"\x01" * 5000)
    before = registry.bytes_uploaded
    third = publish_image(
        registry, base=base, target_repository="qa/r", mode="baked", package_dir=model_package
    )
    assert third.digest != first.digest
    manifest = registry.get_manifest("qa/r", third.digest)
    body = manifest.json()
    expected = body["layers"][-1]["size"] + body["config"]["size"] + len(manifest.body)
    assert registry.bytes_uploaded - before == expected


def test_same_package_gives_the_same_image_digest(registry, images, model_package, tmp_path):
    images.push_base(registry, "serving/base", "d")
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in sorted(model_package.rglob("*")):
        target = copy / path.relative_to(model_package)
        if path.is_dir():
            target.mkdir()
        else:
            target.write_bytes(path.read_bytes())
            target.chmod(path.stat().st_mode)
    refs = [
        publish_image(
            registry,
            base=f"{registry.host}/serving/base:d",
            target_repository=repo,
            mode="baked",
            package_dir=package,
        )
        for repo, package in (("qa/d1", model_package), ("qa/d2", copy))
    ]
    assert refs[0].digest == refs[1].digest
    assert refs[0].tag == refs[1].tag


def test_index_base_uses_the_linux_amd64_image(registry, images, model_package):
    base = images.push_base(registry, "serving/multi", "1.0", as_index=True)

    shared = publish_image(
        registry, base=f"{registry.host}/serving/multi:1.0", target_repository="qa/i", mode="s3"
    )
    single = as_docker_v2(registry.get_manifest("serving/multi", base.image_digest))
    assert shared.digest == single.digest != base.digest

    baked = publish_image(
        registry,
        base=f"{registry.host}/serving/multi@{base.digest}",
        target_repository="qa/i",
        mode="baked",
        package_dir=model_package,
    )
    image = images.pull(registry, "qa/i", baked.digest)
    assert image.config["architecture"] == "amd64"
    assert image.config["config"]["Cmd"] == ["serve"]


def test_base_from_another_registry_is_copied_blob_by_blob(
    registry, oci_registry_with_auth, images, model_package, files_of
):
    source = RegistryClient(
        oci_registry_with_auth.url,
        username=oci_registry_with_auth.username,
        password=oci_registry_with_auth.password,
    )
    images.push_base(source, "upstream/serving", "2.0")

    ref = publish_image(
        registry,
        base=f"{source.host}/upstream/serving:2.0",
        target_repository="qa/x",
        mode="baked",
        package_dir=model_package,
        source=source,
    )

    image = images.pull(registry, "qa/x", ref.digest)
    assert image.files["app/main.py"] == b"print('hello')\n"
    assert image.config["rootfs"]["diff_ids"] == image.layer_diff_ids


def test_push_cut_half_way_leaves_nothing_that_breaks_the_next_run(
    oci_registry, registry, images, tmp_path, dropping_proxy
):
    images.push_base(registry, "serving/base", "cut")
    package = tmp_path / "big-package"
    package.mkdir()
    # Incompressible, so that the model layer is big enough to be cut inside its upload.
    (package / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    base = "serving/base:cut"

    proxy = dropping_proxy(oci_registry.url, limit=1_500_000)
    flaky = RegistryClient(proxy.url, chunk_size=1024 * 1024)
    with pytest.raises(RegistryUnreachable):
        publish_image(
            flaky, base=base, target_repository="qa/cut", mode="baked", package_dir=package
        )
    assert proxy.tripped.is_set()
    assert flaky.bytes_uploaded > 1024 * 1024  # at least one chunk got through

    ref = publish_image(
        registry, base=base, target_repository="qa/cut", mode="baked", package_dir=package
    )
    image = images.pull(registry, "qa/cut", ref.digest)
    assert image.files["opt/ml/model/weights.bin"] == (package / "weights.bin").read_bytes()
    assert image.config["rootfs"]["diff_ids"] == image.layer_diff_ids


def test_baked_without_a_package_is_refused(registry):
    with pytest.raises(ValueError, match="package_dir"):
        publish_image(registry, base="x/y:1", target_repository="qa/z", mode="baked")


def test_known_package_digest_on_the_same_base_is_found_without_rebuilding(
    registry, images, model_package
):
    images.push_base(registry, "serving/base", "fast")
    # Another base image (other files): as Docker v2, the same files would be the same image.
    images.push_base(
        registry,
        "serving/other",
        "fast",
        media_type=DOCKER_MANIFEST,
        layers_files=[{"etc/os-release": b"NAME=other\n"}],
    )

    def publish(base):
        return publish_image(
            registry,
            base=f"{registry.host}/{base}",
            target_repository="qa/fast",
            mode="baked",
            package_dir=model_package,
            package_digest=PACKAGE_DIGEST,
        )

    first = publish("serving/base:fast")
    before = registry.bytes_uploaded
    assert publish("serving/base:fast") == first
    assert registry.bytes_uploaded == before

    # Same package on another base: the tag moves to a new image built on that base.
    moved = publish("serving/other:fast")
    assert moved.tag == first.tag
    assert moved.digest != first.digest
    assert registry.manifest_digest("qa/fast", first.tag) == moved.digest
    assert images.pull(registry, "qa/fast", moved.digest).media_type == DOCKER_MANIFEST


def test_base_on_another_open_registry_needs_no_source_client(
    oci_registry, oci_registry_with_auth, images
):
    """Without `source`, a base on another host is read anonymously (open registry: works)."""
    target = RegistryClient(
        oci_registry_with_auth.url,
        username=oci_registry_with_auth.username,
        password=oci_registry_with_auth.password,
    )
    base = images.push_base(RegistryClient(oci_registry.url), "upstream/open", "3.0")

    ref = publish_image(
        target, base=f"{oci_registry.host}/upstream/open:3.0", target_repository="qa/o", mode="s3"
    )

    assert target.manifest_digest("qa/o", "3.0") == ref.digest
    assert target.get_manifest("qa/o", "3.0").media_type == DOCKER_MANIFEST
    assert [layer["digest"] for layer in target.get_manifest("qa/o", "3.0").json()["layers"]] == (
        base.layer_digests
    )
    assert ref.uri.startswith(f"{oci_registry_with_auth.host}/qa/o@")


def test_one_package_baked_for_two_owners_is_two_images_and_deleting_one_keeps_the_other(
    registry, images, model_package
):
    images.push_base(registry, "serving/base", "owners")
    refs = {
        owner: publish_image(
            registry,
            base=f"{registry.host}/serving/base:owners",
            target_repository="qa/shared",
            mode="baked",
            package_dir=model_package,
            package_digest=PACKAGE_DIGEST,
            owner=owner,
        )
        for owner in ("uid-a", "uid-b")
    }
    a, b = refs["uid-a"], refs["uid-b"]
    assert a.digest != b.digest
    assert a.tag != b.tag
    assert a.tag is not None and a.tag.startswith(package_tag(PACKAGE_DIGEST) + "-")
    again = publish_image(
        registry,
        base=f"{registry.host}/serving/base:owners",
        target_repository="qa/shared",
        mode="baked",
        package_dir=model_package,
        package_digest=PACKAGE_DIGEST,
        owner="uid-a",
    )
    assert again.digest == a.digest, "an owner's own image is found again, not rebuilt"

    registry.delete_manifest("qa/shared", a.digest)

    assert registry.manifest_digest("qa/shared", a.tag) is None
    assert registry.manifest_digest("qa/shared", b.tag) == b.digest
    assert registry.get_manifest("qa/shared", b.digest).digest == b.digest
