"""Application Auto Scaling on SageMaker endpoint variants, as AWS does it (Application Auto
Scaling API reference, RegisterScalableTarget / DeregisterScalableTarget; SageMaker developer
guide, "Automatic scaling of Amazon SageMaker models").

moto 5.2 registers a `sagemaker:variant:DesiredInstanceCount` target for any resource id and never
touches the endpoint. Here:
- RegisterScalableTarget for a variant needs the endpoint and the variant to exist
  (ValidationException `The endpoint variant <resource id> does not exist.`, our wording), and
  brings the variant's count within the new MinCapacity..MaxCapacity at once (AWS scales a target
  whose capacity lies outside a new range into it): DesiredInstanceCount and CurrentInstanceCount
  are set to the nearer bound.
- DeregisterScalableTarget also deletes the target's scaling policies (the reference: "Deregistering
  a scalable target deletes the scaling policies and the scheduled actions that are associated
  with it"); moto kept them.
- `autoscale(endpoint_name, count)` does what the autoscaler would on its own: sets a registered
  variant's count (clamped to the target's range) as UpdateEndpointWeightsAndCapacities would.
  Raises KeyError when the variant has no target.
- A count changed by either moves the endpoint's LastModifiedTime, as a scaling activity does on
  SageMaker (so ListEndpoints shows the change to a caller that lists instead of describing).
"""

from __future__ import annotations

from typing import Any

from moto.applicationautoscaling.exceptions import AWSValidationException
from moto.applicationautoscaling.models import (
    ApplicationAutoscalingBackend,
    applicationautoscaling_backends,
)
from moto.core.utils import utcnow
from moto.sagemaker.models import sagemaker_backends

from .controls import CONTROLS

DIMENSION = "sagemaker:variant:DesiredInstanceCount"
_INSTALLED = False


def _variant(account_id: str, region: str, resource_id: str) -> tuple[Any, dict[str, Any]] | None:
    """The endpoint and its variant `endpoint/<name>/variant/<variant>` names, or None."""
    parts = resource_id.split("/")
    if len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant":
        return None
    endpoint = sagemaker_backends[account_id][region].endpoints.get(parts[1])
    if endpoint is None:
        return None
    for variant in endpoint.production_variants:
        if variant.get("VariantName") == parts[3]:
            return endpoint, variant
    return None


def _set_count(found: tuple[Any, dict[str, Any]], count: int) -> None:
    """A scaling activity: the variant's count, and the endpoint's LastModifiedTime as SageMaker
    moves it when a variant scales."""
    endpoint, variant = found
    if variant.get("DesiredInstanceCount") != count:
        endpoint.last_modified_time = utcnow()
    variant["DesiredInstanceCount"] = variant["CurrentInstanceCount"] = count


def _clamp(found: tuple[Any, dict[str, Any]], low: int | None, high: int | None) -> None:
    count = found[1].get("DesiredInstanceCount")
    if count is None:
        return
    if low is not None and count < low:
        count = low
    if high is not None and count > high:
        count = high
    _set_count(found, count)


def install() -> None:
    """Apply the patches (idempotent); `sagemaker.install()` calls it."""
    global _INSTALLED  # noqa: PLW0603
    if _INSTALLED:
        return
    register = ApplicationAutoscalingBackend.register_scalable_target
    deregister = ApplicationAutoscalingBackend.deregister_scalable_target

    def register_scalable_target(
        self: ApplicationAutoscalingBackend,
        namespace: str,
        r_id: str,
        dimension: str,
        min_capacity: int | None,
        max_capacity: int | None,
        role_arn: str,
        suspended_state: str,
    ) -> Any:
        variant = None
        if namespace == "sagemaker" and dimension == DIMENSION:
            variant = _variant(self.account_id, self.region_name, r_id)
            if variant is None:
                raise AWSValidationException(f"The endpoint variant {r_id} does not exist.")
        target = register(
            self, namespace, r_id, dimension, min_capacity, max_capacity, role_arn,
            suspended_state,
        )  # fmt: skip
        if variant is not None:
            with CONTROLS.lock:
                _clamp(variant, target.min_capacity, target.max_capacity)
        return target

    def deregister_scalable_target(
        self: ApplicationAutoscalingBackend, namespace: str, r_id: str, dimension: str
    ) -> None:
        deregister(self, namespace, r_id, dimension)
        for key, policy in list(self.policies.items()):
            if (policy.service_namespace, policy.resource_id, policy.scalable_dimension) == (
                namespace,
                r_id,
                dimension,
            ):
                del self.policies[key]

    ApplicationAutoscalingBackend.register_scalable_target = register_scalable_target  # type: ignore[method-assign]
    ApplicationAutoscalingBackend.deregister_scalable_target = deregister_scalable_target  # type: ignore[method-assign]
    _INSTALLED = True


def autoscale(
    endpoint_name: str,
    count: int,
    *,
    variant: str = "AllTraffic",
    account_id: str = "123456789012",
    region: str = "us-east-1",
) -> int:
    """Act as the autoscaler: set the registered variant's count within its target's range.
    Returns the count set."""
    backend = applicationautoscaling_backends[account_id][region]
    resource_id = f"endpoint/{endpoint_name}/variant/{variant}"
    target = backend.targets.get(DIMENSION, {}).get(resource_id)
    if target is None:
        raise KeyError(f"no scalable target for {resource_id}")
    found = _variant(account_id, region, resource_id)
    if found is None:
        raise KeyError(f"no variant {resource_id}")
    with CONTROLS.lock:
        _set_count(found, count)
        _clamp(found, target.min_capacity, target.max_capacity)
        return int(found[1]["DesiredInstanceCount"])
