"""Pure planning for adoption: an endpoint made outside (by hand, Terraform, the SageMaker SDK)
under the name the spec asks for becomes this resource's.

`spec.adoption.policy`: Never (the default) keeps the EndpointNameConflict; Adopt takes over an
existing endpoint and never creates one; AdoptOrCreate takes it over when it exists and creates it
otherwise. Adopting tags the endpoint with the owner's tags; from then on it is reconciled to the
spec like any endpoint of ours, so its first change is a normal UpdateEndpoint. The config and model
it served are not tagged: they are left as found, whatever the deletion policy.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from qa_operator.desired import MANAGED_BY, TAG_MANAGED_BY, Owner, owner_tags
from qa_operator.plan import ObservedEndpoint

AdoptionPolicy = Literal["Never", "Adopt", "AdoptOrCreate"]
POLICIES: tuple[AdoptionPolicy, ...] = ("Never", "Adopt", "AdoptOrCreate")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class Adoption:
    """What a pass does about adoption before it plans."""

    endpoint: ObservedEndpoint | None  # as the plan should see it (owned once adopted)
    tags_to_set: Mapping[str, str]  # the owner's tags to put on the endpoint; empty: none
    missing: str | None = None  # Adopt with nothing to adopt: why the pass is blocked
    record: Mapping[str, Any] | None = None  # status.adopted, when adopted on this pass


def plan_adoption(
    policy: AdoptionPolicy,
    endpoint: ObservedEndpoint | None,
    name: str,
    owner: Owner,
    now: dt.datetime,
) -> Adoption:
    if endpoint is None:
        if policy == "Adopt":
            return Adoption(
                None,
                {},
                missing=f"spec.adoption.policy is Adopt but there is no endpoint {name} to adopt; "
                "create it, or use AdoptOrCreate to let this resource create it",
            )
        return Adoption(None, {})
    if endpoint.owned or policy == "Never":
        return Adoption(endpoint, {})
    if endpoint.tags.get(TAG_MANAGED_BY) == MANAGED_BY:
        return Adoption(endpoint, {})  # another resource's: never taken from it
    tags = owner_tags(owner)
    adopted = replace(endpoint, owned=True, tags={**endpoint.tags, **tags})
    record = {
        "endpointArn": endpoint.arn,
        "endpointConfigName": endpoint.config_name,
        "endpointStatus": endpoint.status,
        "adoptedAt": now.strftime(TIME_FORMAT),
    }
    return Adoption(adopted, tags, record=record)
