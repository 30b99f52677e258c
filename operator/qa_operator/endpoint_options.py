"""Pure: the optional parts of the CreateModel and CreateEndpointConfig requests that
`spec.endpoint` asks for (asynchronous inference, data capture, VPC, KMS, network isolation), in
the API's own shapes.

Only what is set appears, so a spec without these options gives the requests, and hence the
content-hashed Model and EndpointConfig names, it always gave: upgrading the operator rolls
nothing out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from qa_operator.rollout import deployment_config
from qa_operator.spec import EndpointSettings


def model_options(endpoint: EndpointSettings) -> dict[str, Any]:
    """Extra CreateModel parameters: VpcConfig, EnableNetworkIsolation."""
    options: dict[str, Any] = {}
    if endpoint.vpc is not None:
        options["VpcConfig"] = {
            "Subnets": list(endpoint.vpc.subnets),
            "SecurityGroupIds": list(endpoint.vpc.security_groups),
        }
    if endpoint.enable_network_isolation:
        options["EnableNetworkIsolation"] = True
    return options


def endpoint_config_options(endpoint: EndpointSettings) -> dict[str, Any]:
    """Extra CreateEndpointConfig parameters: AsyncInferenceConfig, DataCaptureConfig, KmsKeyId."""
    options: dict[str, Any] = {}
    if (async_ := endpoint.async_inference) is not None:
        output: dict[str, Any] = {"S3OutputPath": async_.output_s3_uri}
        if async_.failure_s3_uri:
            output["S3FailurePath"] = async_.failure_s3_uri
        topics = {
            key: value
            for key, value in (
                ("SuccessTopic", async_.sns_success_topic),
                ("ErrorTopic", async_.sns_error_topic),
            )
            if value
        }
        if topics:
            output["NotificationConfig"] = topics
        config: dict[str, Any] = {"OutputConfig": output}
        if async_.max_concurrent_invocations_per_instance is not None:
            config["ClientConfig"] = {
                "MaxConcurrentInvocationsPerInstance": (
                    async_.max_concurrent_invocations_per_instance
                )
            }
        options["AsyncInferenceConfig"] = config
    if (capture := endpoint.data_capture) is not None:
        modes = [
            {"CaptureMode": mode}
            for mode, wanted in (
                ("Input", capture.capture_request),
                ("Output", capture.capture_response),
            )
            if wanted
        ]
        data_capture: dict[str, Any] = {
            "EnableCapture": True,
            "InitialSamplingPercentage": capture.sampling_percent,
            "DestinationS3Uri": capture.destination_s3_uri,
            "CaptureOptions": modes,
        }
        if capture.kms_key_id:
            data_capture["KmsKeyId"] = capture.kms_key_id
        options["DataCaptureConfig"] = data_capture
    if endpoint.kms_key_id:
        options["KmsKeyId"] = endpoint.kms_key_id
    return options


def async_status(endpoint: EndpointSettings, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The status patch for `status.asyncInference`, where an asynchronous endpoint's answers and
    failures land: set while `endpoint.async` is, removed (None) once it is not, and nothing at
    all for a resource that never had it."""
    async_ = endpoint.async_inference
    if async_ is None:
        return {"asyncInference": None} if recorded.get("asyncInference") else {}
    where = {"outputS3Uri": async_.output_s3_uri, "failureS3Uri": async_.failure_s3_uri}
    return {"asyncInference": where}


def update_endpoint_options(endpoint: EndpointSettings) -> dict[str, Any]:
    """Extra UpdateEndpoint parameters: the DeploymentConfig (rollout.py). With autoscaling, a
    new config must not reset the count the autoscaler chose: the variant's properties are
    retained (its DesiredInstanceCount and weight), except its data capture settings, which
    follow the new config (the spec's)."""
    options = deployment_config(endpoint.deployment)
    if endpoint.autoscaling is not None:
        options["RetainAllVariantProperties"] = True
        options["ExcludeRetainedVariantProperties"] = [{"VariantPropertyType": "DataCaptureConfig"}]
    return options
