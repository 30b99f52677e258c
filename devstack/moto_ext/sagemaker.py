"""Patches to moto's SageMaker backend so endpoints behave like the real service.

Each patch names the real behaviour it follows (SageMaker API reference, and the error texts
the service returns). `install()` applies them once, in the process that serves requests.

- CreateModel / CreateEndpointConfig / CreateEndpoint with a name in use fail with
  ValidationException "Cannot create already existing <kind> "<arn>"." (moto overwrites).
- Endpoint lifecycle: CreateEndpoint -> Creating -> InService (or Failed with FailureReason when a
  failure was requested); DeleteEndpoint -> Deleting -> gone, after which DescribeEndpoint says
  "Could not find endpoint ...". Timing comes from `Controls.lifecycle` (default: instant, as moto).
- UpdateEndpoint (moto has none: NotImplementedError, HTTP 500): only an InService endpoint can be
  updated and the new EndpointConfig must exist (ValidationException otherwise). The endpoint goes
  Updating, showing the new config under PendingDeploymentSummary while EndpointConfigName stays
  the old one, then InService on the new config. A requested failure rolls back instead:
  Updating -> RollingBack -> InService on the OLD config with FailureReason set, which is what
  the service does when a blue/green update fails. The reference does not forbid updating to the
  config already in use, so that is allowed (a redeploy).
- With a container runtime installed (`CONTROLS.runtime`, see runtime.py), CreateEndpoint and
  UpdateEndpoint also start the config's containers: `Creating`/`Updating` lasts until they passed
  /ping (and the phase allows); a container that fails ends `Failed` / rolls back with
  SageMaker's FailureReason. DeleteEndpoint stops them. InvokeEndpoint reaches an endpoint while
  it serves: InService, and also Updating/RollingBack/SystemUpdating on its current config
  (UpdateEndpoint: "there is no availability loss").
- `set_endpoint_status()` holds an endpoint in a status SageMaker enters by itself
  (SystemUpdating, OutOfService, UpdateRollbackFailed) until a test sets another.
- ListModels honours NameContains, the creation time filters, sorting and paging, and answers
  summaries; ListEndpoints and ListEndpointConfigs sort Descending by default (listing.py).
- AddTags adds or overwrites by key (moto appended duplicates); AddTags/ListTags/DeleteTags on an
  ARN that names nothing fail with ValidationException (moto crashed with HTTP 500).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, SageMakerModelBackend, sagemaker_backends
from moto.sagemaker.responses import SageMakerResponse
from moto.sagemaker.utils import arn_formatter

from . import deployment, listing, sagemaker_options
from .controls import CONTROLS, Phase
from .runtime import EndpointRuntime, Start, VariantSpec

_INSTALLED = False


@dataclass
class _Transition:
    """An endpoint in a transitional status, and what happens when it leaves it."""

    status: str
    phase: Phase
    then: Callable[[], None]
    pending_config: str | None = None
    start: Start | None = None  # containers the runtime starts meanwhile
    entered: float = field(default_factory=time.monotonic)
    started: Any = field(default_factory=utcnow)
    seen: int = 0

    def done(self) -> bool:
        return (
            self.seen >= self.phase.describes
            and time.monotonic() - self.entered >= self.phase.seconds
            and (self.start is None or self.start.done)
        )


# Keyed by endpoint ARN. Lives beside moto's objects (not on them) because moto turns every
# attribute of a FakeEndpoint into a response field.
_transitions: dict[str, _Transition] = {}


def _arn(backend: SageMakerModelBackend, kind: str, name: str) -> str:
    return arn_formatter(kind, name, backend.account_id, backend.region_name)


def _enter(endpoint: FakeEndpoint, transition: _Transition) -> None:
    """Put the endpoint in a transitional status, or skip straight through an instant one."""
    _transitions.pop(endpoint.arn, None)
    if transition.phase.instant and transition.start is None:
        transition.then()
        return
    endpoint.endpoint_status = transition.status
    endpoint.last_modified_time = utcnow()
    _transitions[endpoint.arn] = transition


def _advance(endpoint: FakeEndpoint, *, described: bool) -> None:
    """Move the endpoint on as far as its phases allow; a describe counts as one observation."""
    with CONTROLS.lock:
        while (transition := _transitions.get(endpoint.arn)) is not None:
            if not transition.done():
                if described:
                    transition.seen += 1
                return
            del _transitions[endpoint.arn]
            transition.then()


def _finish(endpoint: FakeEndpoint, status: str, failure_reason: str | None) -> None:
    endpoint.endpoint_status = status
    endpoint.failure_reason = failure_reason  # type: ignore[assignment]  # moto types it None
    endpoint.last_modified_time = utcnow()


def _reject_existing(
    backend: SageMakerModelBackend, store: dict[str, Any], kind: str, label: str, name: str
) -> None:
    if name in store:
        arn = _arn(backend, kind, name)
        raise ValidationError(message=f'Cannot create already existing {label} "{arn}".')


def _patch(name: str, replacement: Callable[..., Any]) -> None:
    """Replace SageMakerModelBackend.<name>, handing the original to the replacement."""
    original = getattr(SageMakerModelBackend, name)

    @functools.wraps(original)
    def patched(self: SageMakerModelBackend, *args: Any, **kwargs: Any) -> Any:
        return replacement(original, self, *args, **kwargs)

    setattr(SageMakerModelBackend, name, patched)


def _create_model(original: Any, self: SageMakerModelBackend, **kwargs: Any) -> Any:
    _reject_existing(self, self._models, "model", "model", kwargs["model_name"])
    return original(self, **kwargs)


def _create_endpoint_config(original: Any, self: SageMakerModelBackend, **kwargs: Any) -> Any:
    name = kwargs["endpoint_config_name"]
    store = self.endpoint_configs
    _reject_existing(self, store, "endpoint-config", "endpoint configuration", name)
    return original(self, **kwargs)


def _create_endpoint(original: Any, self: SageMakerModelBackend, **kwargs: Any) -> Any:
    name = kwargs["endpoint_name"]
    if (existing := self.endpoints.get(name)) is not None:
        _advance(existing, described=False)  # a finished delete frees the name
    _reject_existing(self, self.endpoints, "endpoint", "endpoint", name)
    with CONTROLS.lock:
        endpoint = original(self, **kwargs)
        failure = CONTROLS.take_creation_failure(name)
        runtime = CONTROLS.runtime
        start = None
        if failure is None and runtime is not None:
            start = _start_containers(self, runtime, endpoint, kwargs["endpoint_config_name"])

        def created() -> None:
            if start is None:
                _finish(endpoint, "InService" if failure is None else "Failed", failure)
            elif runtime is not None and runtime.promote(endpoint.arn, start):
                _finish(endpoint, "InService", None)
            else:
                _finish(endpoint, "Failed", start.failure)

        _enter(
            endpoint,
            _Transition(
                "Creating",
                CONTROLS.lifecycle.creating,
                then=created,
                pending_config=kwargs["endpoint_config_name"],
                start=start,
            ),
        )
    return endpoint


def _start_containers(
    backend: SageMakerModelBackend, runtime: EndpointRuntime, endpoint: FakeEndpoint, config: str
) -> Start:
    """Have the runtime start the containers of `config` for the endpoint, as the Models stand
    now (SageMaker too reads them when the call is made)."""
    variants = []
    for variant in backend.endpoint_configs[config].production_variants:
        model_name = variant["ModelName"]
        model = backend._models.get(model_name)
        definition = None
        if model is not None and (model.primary_container or model.containers):
            definition = model.primary_container or model.containers[0]
        timeout = variant.get("ContainerStartupHealthCheckTimeoutInSeconds")
        variants.append(
            VariantSpec(
                variant_name=variant["VariantName"],
                model_arn=_arn(backend, "model", model_name),
                container=dict(definition) if definition else None,
                startup_timeout_s=float(timeout) if timeout else None,
            )
        )
    return runtime.start(
        endpoint.arn,
        endpoint.endpoint_name,
        variants,
        account=backend.account_id,
        region=backend.region_name,
    )


def _describe_endpoint(original: Any, self: SageMakerModelBackend, endpoint_name: str) -> Any:
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is not None:
        _advance(endpoint, described=True)
    with CONTROLS.lock:
        response: dict[str, Any] = original(self, endpoint_name)
        transition = _transitions.get(response["EndpointArn"])
        if transition is not None and transition.pending_config is not None:
            response["PendingDeploymentSummary"] = {
                "EndpointConfigName": transition.pending_config,
                "StartTime": transition.started,
            }
    return response


def _list_endpoints(original: Any, self: SageMakerModelBackend, *args: Any, **kw: Any) -> Any:
    for endpoint in list(self.endpoints.values()):
        _advance(endpoint, described=False)
    return listing.descending_by_default(original)(self, *args, **kw)


def _list_endpoint_configs(
    original: Any, self: SageMakerModelBackend, *args: Any, **kw: Any
) -> Any:
    return listing.descending_by_default(original)(self, *args, **kw)


def _delete_endpoint(original: Any, self: SageMakerModelBackend, endpoint_name: str) -> None:
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        original(self, endpoint_name)  # raises moto's "Could not find endpoint"
        return

    def gone() -> None:
        if self.endpoints.get(endpoint_name) is endpoint:
            del self.endpoints[endpoint_name]

    with CONTROLS.lock:
        if CONTROLS.runtime is not None:
            CONTROLS.runtime.remove(endpoint.arn)
        _enter(endpoint, _Transition("Deleting", CONTROLS.lifecycle.deleting, then=gone))


def _get_resource(original: Any, self: SageMakerModelBackend, arn: str) -> Any:
    resource = original(self, arn)
    if resource is None:
        raise ValidationError(message=f"Could not find resource {arn}.")
    return resource


def _add_tags(
    original: Any, self: SageMakerModelBackend, arn: str, tags: list[dict[str, str]]
) -> list[dict[str, str]]:
    resource = self._get_resource_from_arn(arn)
    new_keys = {tag["Key"] for tag in tags}
    resource.tags = [t for t in resource.tags if t["Key"] not in new_keys] + list(tags)
    return list(resource.tags)


def _update_endpoint(
    self: SageMakerModelBackend,
    endpoint_name: str,
    endpoint_config_name: str,
    retain_all_variant_properties: bool = False,
    exclude_retained_variant_properties: list[dict[str, str]] | None = None,
    deployment_config: dict[str, Any] | None = None,
) -> str:
    endpoint = self.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = _arn(self, "endpoint", endpoint_name)
        raise ValidationError(message=f'Could not find endpoint "{arn}".')
    config = self.endpoint_configs.get(endpoint_config_name)
    if config is None:
        arn = _arn(self, "endpoint-config", endpoint_config_name)
        raise ValidationError(message=f'Could not find endpoint configuration "{arn}".')
    deployment.check(deployment_config, config.production_variants)
    _advance(endpoint, described=False)
    with CONTROLS.lock:
        if endpoint.endpoint_status == "Failed":
            raise ValidationError(
                message=f'Cannot update failed endpoint "{endpoint.arn}"; delete it first.'
            )
        if endpoint.endpoint_status != "InService":
            raise ValidationError(message=f'Cannot update in-progress endpoint "{endpoint.arn}".')
        failure = CONTROLS.take_update_failure(endpoint_name)
        failure = failure or deployment.alarm_failure(deployment_config)
        if deployment_config:
            endpoint.last_deployment_config = deployment_config  # type: ignore[attr-defined]
        phase = CONTROLS.lifecycle.updating
        endpoint.failure_reason = None
        runtime = CONTROLS.runtime
        start = None
        if failure is None and runtime is not None:
            start = _start_containers(self, runtime, endpoint, endpoint_config_name)

        def updated() -> None:
            if start is not None and (runtime is None or not runtime.promote(endpoint.arn, start)):
                roll_back(start.failure)
                return
            endpoint.endpoint_config_name = endpoint_config_name
            before = {v["VariantName"]: v for v in endpoint.production_variants}
            endpoint.production_variants = endpoint._process_production_variants(
                config.production_variants
            )
            excluded = {p["VariantPropertyType"] for p in exclude_retained_variant_properties or ()}
            if retain_all_variant_properties:
                _retain(before, endpoint.production_variants, excluded)
            if not retain_all_variant_properties or "DataCaptureConfig" in excluded:
                endpoint.data_capture_config = config.data_capture_config
            _finish(endpoint, "InService", None)

        def roll_back(reason: str | None) -> None:
            _enter(
                endpoint,
                _Transition(
                    "RollingBack",
                    phase,
                    then=lambda: _finish(endpoint, "InService", reason),
                ),
            )

        _enter(
            endpoint,
            _Transition(
                "Updating",
                phase,
                then=updated if failure is None else lambda: roll_back(failure),
                pending_config=endpoint_config_name,
                start=start,
            ),
        )
    return str(endpoint.arn)


RETAINED = {
    "DesiredInstanceCount": ("DesiredInstanceCount", "CurrentInstanceCount"),
    "DesiredWeight": ("DesiredWeight", "CurrentWeight"),
}


def _retain(
    before: dict[str, dict[str, Any]], variants: list[dict[str, Any]], excluded: set[str]
) -> None:
    """UpdateEndpoint with RetainAllVariantProperties: a variant that keeps its name keeps its
    count and weight from before, unless ExcludeRetainedVariantProperties names them."""
    for variant in variants:
        old = before.get(variant["VariantName"])
        if old is None:
            continue
        for prop, keys in RETAINED.items():
            if prop not in excluded:
                for key in keys:
                    if old.get(key) is not None:
                        variant[key] = old[key]


_PATCHES: dict[str, Callable[..., Any]] = {
    "create_model": _create_model,
    "create_endpoint_config": _create_endpoint_config,
    "create_endpoint": _create_endpoint,
    "describe_endpoint": _describe_endpoint,
    "list_endpoints": _list_endpoints,
    "list_endpoint_configs": _list_endpoint_configs,
    "delete_endpoint": _delete_endpoint,
    "_get_resource_from_arn": _get_resource,
    "add_tags": _add_tags,
}


def _update_endpoint_response(self: SageMakerResponse) -> ActionResult:
    arn = self.sagemaker_backend.update_endpoint(  # type: ignore[attr-defined]
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        retain_all_variant_properties=bool(self._get_param("RetainAllVariantProperties", False)),
        exclude_retained_variant_properties=self._get_param("ExcludeRetainedVariantProperties"),
        deployment_config=self._get_param("DeploymentConfig"),
    )
    return ActionResult({"EndpointArn": arn})


def set_endpoint_status(
    endpoint_name: str,
    status: str,
    failure_reason: str | None = None,
    *,
    account_id: str = "123456789012",
    region: str = "us-east-1",
) -> None:
    """Put an existing endpoint in `status` until told otherwise, as SageMaker does on its own:
    `SystemUpdating` (patching, the endpoint serves), `OutOfService`, `UpdateRollbackFailed`;
    `InService` brings it back. Any transition in flight is dropped. While the status is not
    InService, UpdateEndpoint is refused as for any in-progress endpoint; DeleteEndpoint works."""
    backend = sagemaker_backends[account_id][region]
    with CONTROLS.lock:
        endpoint = backend.endpoints.get(endpoint_name)
        if endpoint is None:
            raise KeyError(f"no endpoint {endpoint_name} in {account_id}/{region}")
        _transitions.pop(endpoint.arn, None)
        if CONTROLS.runtime is not None:
            CONTROLS.runtime.cancel(endpoint.arn)
        _finish(endpoint, status, failure_reason)


SERVING_STATUSES = frozenset({"InService", "Updating", "SystemUpdating", "RollingBack"})


def serving_endpoint(account_id: str, region: str, endpoint_name: str) -> str | None:
    """The endpoint's ARN when it takes invocations (its current config serves while it is
    updated, rolled back or patched), else None: it does not exist, or it is Creating, Failed,
    Deleting or OutOfService."""
    try:
        backend = sagemaker_backends[account_id][region]
    except KeyError:
        return None
    endpoint = backend.endpoints.get(endpoint_name)
    if endpoint is None:
        return None
    _advance(endpoint, described=False)
    with CONTROLS.lock:
        if backend.endpoints.get(endpoint_name) is not endpoint:
            return None  # a finished delete
        return str(endpoint.arn) if endpoint.endpoint_status in SERVING_STATUSES else None


def async_inference_config(
    account_id: str, region: str, endpoint_name: str
) -> dict[str, Any] | None:
    """The AsyncInferenceConfig of the endpoint's current EndpointConfig (the one that serves while
    it is updated), None when it has none or the endpoint does not exist."""
    try:
        backend = sagemaker_backends[account_id][region]
    except KeyError:
        return None
    with CONTROLS.lock:
        endpoint = backend.endpoints.get(endpoint_name)
        config = backend.endpoint_configs.get(endpoint.endpoint_config_name) if endpoint else None
        found = config.async_inference_config if config is not None else None
        return dict(found) if found else None


def install() -> None:
    """Apply the patches (idempotent). Call before the server handles its first request."""
    global _INSTALLED  # noqa: PLW0603
    with CONTROLS.lock:
        if _INSTALLED:
            return
        for name, replacement in _PATCHES.items():
            _patch(name, replacement)
        sagemaker_options.install()
        from . import autoscaling, sagemaker_capacity  # they build on this module

        sagemaker_capacity.install()
        autoscaling.install()
        SageMakerModelBackend.update_endpoint = _update_endpoint  # type: ignore[attr-defined]
        SageMakerResponse.update_endpoint = _update_endpoint_response  # type: ignore[attr-defined]
        SageMakerResponse.list_models = listing.list_models_response  # type: ignore[method-assign]
        _INSTALLED = True


def reset() -> None:
    """Forget every in-flight transition (moto's own state is reset separately)."""
    with CONTROLS.lock:
        _transitions.clear()
    deployment.reset()
