"""Patches for the endpoint options moto 5.2 drops or does not check (SageMaker API reference,
CreateModel and CreateEndpointConfig).

- CreateModel's `EnableNetworkIsolation` is kept and DescribeModel returns it (moto always says
  false).
- CreateEndpointConfig checks a serverless variant's `ProvisionedConcurrency` against its
  `MaxConcurrency` ("ProvisionedConcurrency ... must be less than or equal to MaxConcurrency"),
  and refuses, for a config with a serverless variant, what serverless endpoints do not support
  ("Serverless Inference", feature exclusions): `DataCaptureConfig`, `AsyncInferenceConfig`.
  The wording of these ValidationExceptions is ours.
"""

from __future__ import annotations

from typing import Any

from moto.core.responses import ActionResult
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

_INSTALLED = False


def _create_model_response(self: SageMakerResponse) -> ActionResult:
    model = self.sagemaker_backend.create_model(
        model_name=self._get_param("ModelName"),
        execution_role_arn=self._get_param("ExecutionRoleArn"),
        primary_container=self._get_param("PrimaryContainer"),
        vpc_config=self._get_param("VpcConfig"),
        containers=self._get_param("Containers"),
        tags=self._get_param("Tags"),
    )
    model.enable_network_isolation = bool(self._get_param("EnableNetworkIsolation", False))
    return ActionResult(model.response_create)


def check_endpoint_config(
    production_variants: list[dict[str, Any]],
    data_capture_config: dict[str, Any] | None,
    async_inference_config: dict[str, Any] | None,
) -> None:
    serverless = [v for v in production_variants if "ServerlessConfig" in v]
    for variant in serverless:
        config = variant["ServerlessConfig"]
        provisioned = config.get("ProvisionedConcurrency")
        if provisioned is not None and provisioned > config.get("MaxConcurrency", 0):
            raise ValidationError(
                message=f"ProvisionedConcurrency ({provisioned}) of production variant "
                f"{variant.get('VariantName')} must be less than or equal to MaxConcurrency "
                f"({config.get('MaxConcurrency')})."
            )
    if serverless and (data_capture_config or async_inference_config):
        raise ValidationError(
            message="DataCaptureConfig and AsyncInferenceConfig are not supported for an "
            "endpoint configuration with a serverless production variant."
        )


def install() -> None:
    """Apply the patches (idempotent); `sagemaker.install()` calls it."""
    global _INSTALLED  # noqa: PLW0603
    if _INSTALLED:
        return
    original = SageMakerModelBackend.create_endpoint_config

    def create_endpoint_config(self: SageMakerModelBackend, **kwargs: Any) -> Any:
        check_endpoint_config(
            kwargs.get("production_variants") or [],
            kwargs.get("data_capture_config"),
            kwargs.get("async_inference_config"),
        )
        return original(self, **kwargs)

    SageMakerModelBackend.create_endpoint_config = create_endpoint_config  # type: ignore[method-assign,assignment]
    SageMakerResponse.create_model = _create_model_response  # type: ignore[method-assign]
    _INSTALLED = True
