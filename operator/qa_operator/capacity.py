"""Pure: capacity-only changes, applied in place.

The instance count is capacity, not content: it is not part of the EndpointConfig's name, so a
change of `instanceCount` alone keeps the config the endpoint serves and is applied with
UpdateEndpointWeightsAndCapacities (no new Model or EndpointConfig, no blue/green deployment).
The same step puts back a count someone changed outside the spec (drift). A change that also
touches the model, image, instance type or an option makes a new config, created with the new
count, and takes the UpdateEndpoint path as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from qa_operator.desired import VARIANT_NAME
from qa_operator.plan import Plan, State
from qa_operator.spec import Compute, InstanceCompute


@dataclass(frozen=True)
class CapacityChange:
    variant: str
    count: int  # what the spec asks for
    observed: int  # the variant's DesiredInstanceCount now


def capacity_change(
    compute: Compute, variant_counts: Mapping[str, int] | None, *, autoscaled: bool = False
) -> CapacityChange | None:
    """The count to set on the endpoint's variant, or None when it already has it, when its
    counts were not observed, for serverless (no instances), or while autoscaling is on (the
    autoscaler owns the count; instanceCount was only the initial one)."""
    if autoscaled or not isinstance(compute, InstanceCompute) or not variant_counts:
        return None
    observed = variant_counts.get(VARIANT_NAME)
    if observed is None or observed == compute.instance_count:
        return None
    return CapacityChange(VARIANT_NAME, compute.instance_count, observed)


def plan_scaling(plan: Plan, change: CapacityChange | None, endpoint: str) -> Plan:
    """A Ready plan whose endpoint needs another count becomes a scaling step: it still serves
    the desired config (Ready, Progressing). What the Ready plan would also have done (clean-up,
    tags) waits for the pass that finds it scaled."""
    if change is None or plan.state is not State.READY:
        return plan
    return Plan(
        State.SERVING_BUSY,
        "ScalingEndpoint",
        f"endpoint {endpoint} serves the desired config; setting variant {change.variant} "
        f"from {change.observed} to {change.count} instance(s) in place "
        "(UpdateEndpointWeightsAndCapacities)",
    )


def desired_instance_count(
    variant_counts: Mapping[str, int] | None, change: CapacityChange | None
) -> dict[str, int | None]:
    """The status patch for `status.desiredInstanceCount`: the count just asked for, else the
    one observed on the endpoint's variant; nothing when the counts were not observed."""
    if change is not None:
        return {"desiredInstanceCount": change.count}
    if not variant_counts or VARIANT_NAME not in variant_counts:
        return {}
    return {"desiredInstanceCount": variant_counts[VARIANT_NAME]}
