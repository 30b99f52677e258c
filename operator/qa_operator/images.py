"""Which serving image a SageMaker Model runs, and making sure it is in the registry.

With a target repository (spec.image.repository or the operator default) the image is published
through the registry API, no Docker daemon: the base serving image is copied in, and in `baked`
mode one layer with the model package is appended. Without one, `s3` mode runs the configured
serving image as it is.

The serving image follows the package's engine: a package of engine onnxruntime runs on the
torch-less image when one is configured (QA_OPERATOR_SERVING_IMAGE_ONNXRUNTIME), every other
package on QA_OPERATOR_SERVING_IMAGE (which serves both engines).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa_operator import metrics
from qa_operator.desired import short_hash
from qa_operator.errors import OperatorError, RetryableError, TerminalError
from qa_operator.settings import OperatorSettings
from qa_operator.spec import ImageSettings

ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?/"
    r"(?P<repo>[a-z0-9._/-]+):(?P<tag>[\w][\w.-]{0,127})$"
)


@dataclass(frozen=True)
class ResolvedImage:
    uri: str
    digest: str | None
    repository: str | None = None  # set when published to the target repository
    tag: str | None = None
    pushed: bool = False  # a baked image this resource's package made: its own to delete


def serving_image_for(settings: OperatorSettings, engine: str) -> str | None:
    """The serving image a package of `engine` runs on."""
    if engine == "onnxruntime" and settings.serving_image_onnxruntime is not None:
        return settings.serving_image_onnxruntime
    return settings.serving_image


class ImageResolver:
    def __init__(self, settings: OperatorSettings, ecr_client: Callable[[str], Any]) -> None:
        self._settings = settings
        self._ecr_client = ecr_client

    def cache_key(self, image: ImageSettings, package_digest: str) -> str:
        repository = image.repository or self._settings.image_repository or ""
        onnxruntime_image = self._settings.serving_image_onnxruntime
        # Which configured image a package runs on follows from the package (its engine), so
        # with two images the key holds both and the package's digest; with one it is the key
        # it always was.
        package = package_digest if image.mode == "baked" or onnxruntime_image else ""
        images = [self._settings.serving_image, *([onnxruntime_image] if onnxruntime_image else [])]
        return short_hash([*images, repository, image.mode, package], 16)

    def resolve(
        self,
        image: ImageSettings,
        region: str,
        package_dir: Path,
        package_digest: str,
        *,
        owner: str | None = None,
    ) -> ResolvedImage:
        from qa_operator.model.packaging import recorded_engine

        base = serving_image_for(self._settings, recorded_engine(package_dir))
        repository = image.repository or self._settings.image_repository
        if base is None:
            raise TerminalError(
                "NoServingImage",
                "no serving image is configured: set QA_OPERATOR_SERVING_IMAGE on the operator",
            )
        if repository is None:
            if image.mode == "baked":
                raise TerminalError(
                    "NoImageRepository",
                    "image.mode baked needs image.repository (or QA_OPERATOR_IMAGE_REPOSITORY)",
                )
            return self._pinned(base)
        return self._publish(base, repository, image, region, package_dir, package_digest, owner)

    def _pinned(self, base: str) -> ResolvedImage:
        """The configured image by digest, so that a moved tag never changes a running endpoint.
        An ECR tag is resolved with DescribeImages; other registries are used as given."""
        _, _, digest = base.partition("@")
        if digest:
            return ResolvedImage(uri=base, digest=digest)
        match = ECR_IMAGE.match(base)
        if match is None:
            return ResolvedImage(uri=base, digest=None)
        account, region, repository, tag = match.group("account", "region", "repo", "tag")
        from botocore.exceptions import BotoCoreError, ClientError

        from qa_operator.aws.errors import ErrorClass, as_operator_error, classify

        try:
            found = self._ecr_client(region).describe_images(
                registryId=account, repositoryName=repository, imageIds=[{"imageTag": tag}]
            )
        except (ClientError, BotoCoreError) as exc:
            if classify(exc) is ErrorClass.NOT_FOUND or "ImageNotFound" in str(exc):
                raise TerminalError("ServingImageNotFound", f"{base} is not in ECR: {exc}") from exc
            raise as_operator_error(exc, "ECR DescribeImages") from exc
        pinned = str(found["imageDetails"][0]["imageDigest"])
        return ResolvedImage(uri=f"{base.rpartition(':')[0]}@{pinned}", digest=pinned)

    def _publish(
        self,
        base: str,
        repository: str,
        image: ImageSettings,
        region: str,
        package_dir: Path,
        package_digest: str,
        owner: str | None,
    ) -> ResolvedImage:
        from botocore.exceptions import BotoCoreError, ClientError

        from qa_operator.aws.ecr import ecr_registry_client, ensure_repository
        from qa_operator.registry import client as registry
        from qa_operator.registry.images import UnsupportedImage, publish_image

        ecr = self._ecr_client(region)
        try:
            ensure_repository(ecr, repository)
            client = ecr_registry_client(ecr, registry_endpoint=self._settings.registry_endpoint)
            with metrics.image_publish(image.mode):
                ref = publish_image(
                    client,
                    base=base,
                    target_repository=repository,
                    mode=image.mode,
                    package_dir=package_dir,
                    package_digest=package_digest,
                    owner=owner,
                )
        except UnsupportedImage as exc:
            raise TerminalError("UnsupportedServingImage", str(exc)) from exc
        except (ClientError, BotoCoreError, registry.RegistryError) as exc:
            raise _registry_error(exc) from exc
        return ResolvedImage(
            uri=ref.uri,
            digest=ref.digest,
            repository=repository,
            tag=ref.tag,
            pushed=image.mode == "baked",
        )

    def delete(self, region: str, repository: str, digest: str) -> bool:
        """Delete a pushed image by its manifest digest; False when it was already gone."""
        from botocore.exceptions import BotoCoreError, ClientError

        from qa_operator.aws.ecr import ecr_registry_client
        from qa_operator.aws.errors import aws_call_or_none
        from qa_operator.registry import client as registry

        ecr = self._ecr_client(region)
        try:
            if self._settings.registry_endpoint is None:
                # ECR itself: its control plane deletes images, whatever its /v2 API allows.
                found = aws_call_or_none(
                    "ECR BatchDeleteImage",
                    lambda: ecr.batch_delete_image(
                        repositoryName=repository, imageIds=[{"imageDigest": digest}]
                    ),
                )
                return bool(found and found.get("imageIds"))
            client = ecr_registry_client(ecr, registry_endpoint=self._settings.registry_endpoint)
            return client.delete_manifest(repository, digest)
        except (ClientError, BotoCoreError, registry.RegistryError) as exc:
            raise _registry_error(exc) from exc


def _registry_error(exc: Exception) -> OperatorError:
    """ECR and registry failures in the operator's terms."""
    from botocore.exceptions import BotoCoreError, ClientError

    from qa_operator.aws.errors import as_operator_error
    from qa_operator.registry import client as registry

    if isinstance(exc, ClientError | BotoCoreError):
        return as_operator_error(exc, "ECR")
    if isinstance(exc, registry.RegistryUnauthorized):
        return TerminalError("RegistryUnauthorized", f"registry refused: {exc}")
    if isinstance(exc, registry.RegistryNotFound):
        return TerminalError("ImageNotFound", f"registry: {exc}")
    if isinstance(exc, registry.RegistryUnreachable):
        return RetryableError("RegistryUnreachable", f"registry unreachable: {exc}")
    return RetryableError("RegistryError", f"registry: {exc}")
