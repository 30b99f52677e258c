"""UpdateEndpointWeightsAndCapacities as SageMaker does it (API reference).

moto 5.2 applies it instantly, to an endpoint in any status, and sets the weight to null when the
request gives only a count. Here: only an InService endpoint may be changed (ValidationException
`Cannot update in-progress endpoint "<arn>".`, as UpdateEndpoint); the variant names must exist
and be unique (moto's checks, kept); the variant's DesiredInstanceCount / DesiredWeight change at
once, the endpoint is `Updating` for `Controls.lifecycle.updating` (no PendingDeploymentSummary:
the config stays), then InService with CurrentInstanceCount / CurrentWeight equal to the desired
ones. A value the request leaves out keeps what it was. No container is started or stopped: the
runtime runs one container per variant whatever its count.
"""

from __future__ import annotations

from typing import Any

from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import SageMakerModelBackend

from .controls import CONTROLS
from .sagemaker import _advance, _arn, _enter, _finish, _Transition

_INSTALLED = False


def _update_weights_and_capacities(
    original: Any,
    self: SageMakerModelBackend,
    endpoint_name: str,
    desired_weights_and_capacities: list[dict[str, Any]],
) -> str:
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = _arn(self, "endpoint", endpoint_name)
        raise ValidationError(message=f'Could not find endpoint "{arn}".')
    _advance(endpoint, described=False)
    with CONTROLS.lock:
        if endpoint.endpoint_status != "InService":
            raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
        before = {v["VariantName"]: dict(v) for v in endpoint.production_variants}
        original(self, endpoint_name, desired_weights_and_capacities)  # moto's checks
        current = {}
        for variant in endpoint.production_variants:
            old = before[variant["VariantName"]]
            for key in ("DesiredWeight", "DesiredInstanceCount"):
                if variant.get(key) is None:
                    variant[key] = old.get(key)
            # Desired at once, current once the update is done.
            current[variant["VariantName"]] = (
                variant["DesiredWeight"],
                variant["DesiredInstanceCount"],
            )
            variant["CurrentWeight"] = old.get("CurrentWeight")
            variant["CurrentInstanceCount"] = old.get("CurrentInstanceCount")

        def updated() -> None:
            for variant in endpoint.production_variants:
                weight, count = current[variant["VariantName"]]
                variant["CurrentWeight"], variant["CurrentInstanceCount"] = weight, count
            _finish(endpoint, "InService", None)

        endpoint.endpoint_status = "InService"  # moto's own flip, undone by _enter
        _enter(endpoint, _Transition("Updating", CONTROLS.lifecycle.updating, then=updated))
    return str(endpoint.arn)


def install() -> None:
    """Apply the patch (idempotent); `sagemaker.install()` calls it."""
    global _INSTALLED  # noqa: PLW0603
    if _INSTALLED:
        return
    original = SageMakerModelBackend.update_endpoint_weights_and_capacities

    def patched(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> str:
        return _update_weights_and_capacities(original, self, *args, **kwargs)

    SageMakerModelBackend.update_endpoint_weights_and_capacities = patched  # type: ignore[method-assign]
    _INSTALLED = True
