"""SageMaker adapter for capacity changes in place: UpdateEndpointWeightsAndCapacities."""

from __future__ import annotations

from typing import Any

from qa_operator.aws.errors import aws_call
from qa_operator.capacity import CapacityChange


class CapacityGateway:
    def __init__(self, client: Any) -> None:
        self._client = client

    def apply(self, endpoint: str, change: CapacityChange) -> None:
        aws_call(
            "UpdateEndpointWeightsAndCapacities",
            lambda: self._client.update_endpoint_weights_and_capacities(
                EndpointName=endpoint,
                DesiredWeightsAndCapacities=[
                    {"VariantName": change.variant, "DesiredInstanceCount": change.count}
                ],
            ),
        )
