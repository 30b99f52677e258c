"""Which configured serving image a package runs on, by the engine it records."""

from __future__ import annotations

import pytest

from qa_operator.images import ImageResolver, serving_image_for
from qa_operator.settings import OperatorSettings
from qa_operator.spec import ImageSettings

GENERAL = "registry.local/qa-serving:1"
TORCHLESS = "registry.local/qa-serving:1-onnxruntime"


def _settings(general: str | None, torchless: str | None) -> OperatorSettings:
    return OperatorSettings(
        default_region="us-east-1", serving_image=general, serving_image_onnxruntime=torchless
    )


@pytest.mark.parametrize(
    ("general", "torchless", "engine", "chosen"),
    [
        (GENERAL, TORCHLESS, "onnxruntime", TORCHLESS),
        (GENERAL, TORCHLESS, "torch", GENERAL),  # the torch-less image cannot run torch
        (GENERAL, None, "onnxruntime", GENERAL),  # the general image has onnxruntime too
        (GENERAL, None, "torch", GENERAL),
        (None, TORCHLESS, "onnxruntime", TORCHLESS),
        (None, TORCHLESS, "torch", None),  # NoServingImage for a torch package
        (None, None, "onnxruntime", None),
    ],
)
def test_the_serving_image_follows_the_packages_engine(
    general: str | None, torchless: str | None, engine: str, chosen: str | None
) -> None:
    assert serving_image_for(_settings(general, torchless), engine) == chosen


def _key(settings: OperatorSettings, mode: str, package_digest: str) -> str:
    resolver = ImageResolver(settings, lambda region: None)
    return resolver.cache_key(ImageSettings(mode=mode), package_digest)  # type: ignore[arg-type]


def test_the_image_key_is_unchanged_until_a_torchless_image_is_configured() -> None:
    one_image = _settings(GENERAL, None)
    # s3 mode, one image: the package does not choose the image, its digest is not in the key.
    assert _key(one_image, "s3", "sha256:a") == _key(one_image, "s3", "sha256:b")
    assert _key(one_image, "baked", "sha256:a") != _key(one_image, "baked", "sha256:b")


def test_with_two_images_the_package_and_both_images_are_in_the_key() -> None:
    two_images = _settings(GENERAL, TORCHLESS)
    # The package's engine picks the image: another package may run on another image.
    assert _key(two_images, "s3", "sha256:a") != _key(two_images, "s3", "sha256:b")
    assert _key(two_images, "s3", "sha256:a") != _key(_settings(GENERAL, None), "s3", "sha256:a")
    assert _key(two_images, "s3", "sha256:a") != _key(
        _settings(GENERAL, TORCHLESS + "-2"), "s3", "sha256:a"
    )
