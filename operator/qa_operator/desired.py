"""Pure builders: spec + owner + resolved artifacts -> the SageMaker state we want.

Every name is deterministic. The endpoint is named after its owner; the Model and EndpointConfig
carry a digest of their owner (namespace, name, uid) and of what they contain, so a crash between
an AWS call and the status write finds the same names on the next pass and never creates a second
resource, and two resources never share a Model or EndpointConfig, even when their endpoint names
agree in the first characters that the names keep.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from qa_operator.endpoint_options import (
    endpoint_config_options,
    model_options,
    update_endpoint_options,
)
from qa_operator.model.limits import ServingLimits
from qa_operator.spec import DeploymentSpec, InstanceCompute, MlflowSource, ServerlessCompute

MAX_NAME = 63
VARIANT_NAME = "AllTraffic"
TAG_NAMESPACE = "qaoperator.io/namespace"
TAG_NAME = "qaoperator.io/name"
TAG_UID = "qaoperator.io/uid"
TAG_MANAGED_BY = "qaoperator.io/managed-by"
MANAGED_BY = "qa-operator"


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class Artifacts:
    """What packaging and the image pipeline produced for the current spec."""

    package_digest: str
    image_uri: str
    model_data_url: str | None  # None when the package is baked into the image


@dataclass(frozen=True)
class DesiredModel:
    name: str
    image_uri: str
    model_data_url: str | None
    environment: Mapping[str, str]
    execution_role_arn: str
    tags: Mapping[str, str]
    options: Mapping[str, Any] = field(default_factory=dict)  # more CreateModel parameters


@dataclass(frozen=True)
class DesiredEndpointConfig:
    name: str
    model_name: str
    compute: InstanceCompute | ServerlessCompute
    tags: Mapping[str, str]
    options: Mapping[str, Any] = field(default_factory=dict)  # more CreateEndpointConfig ones


@dataclass(frozen=True)
class DesiredEndpoint:
    name: str
    config_name: str
    tags: Mapping[str, str]
    update_options: Mapping[str, Any] = field(default_factory=dict)  # more UpdateEndpoint ones


@dataclass(frozen=True)
class DesiredState:
    model: DesiredModel
    config: DesiredEndpointConfig
    endpoint: DesiredEndpoint


def short_hash(payload: Any, length: int = 10) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def endpoint_name(owner: Owner, spec: DeploymentSpec) -> str:
    if spec.endpoint.name:
        return spec.endpoint.name
    base = re.sub(r"[^a-zA-Z0-9-]", "-", f"{owner.namespace}-{owner.name}").strip("-")
    if len(base) <= MAX_NAME:
        return base
    suffix = short_hash([owner.namespace, owner.name], 8)
    return f"{base[: MAX_NAME - len(suffix) - 1].rstrip('-')}-{suffix}"


def owner_tags(owner: Owner) -> dict[str, str]:
    return {
        TAG_NAMESPACE: owner.namespace,
        TAG_NAME: owner.name,
        TAG_UID: owner.uid,
        TAG_MANAGED_BY: MANAGED_BY,
    }


def is_owned_by(tags: Mapping[str, str], owner: Owner) -> bool:
    return tags.get(TAG_UID) == owner.uid and tags.get(TAG_MANAGED_BY) == MANAGED_BY


CONTENT_HASH_LENGTH = 10


def name_stem(endpoint: str) -> str:
    """What every Model and EndpointConfig name of this endpoint starts with."""
    return endpoint[: MAX_NAME - CONTENT_HASH_LENGTH - 1].rstrip("-")


def content_name(endpoint: str, owner: Owner, payload: Any) -> str:
    """`<stem>-<hash>`: the stem is readable, the hash tells owners and contents apart (the stem
    alone cannot: long endpoint names that differ only past it share it)."""
    hashed = {"owner": [owner.namespace, owner.name, owner.uid], "content": payload}
    return f"{name_stem(endpoint)}-{short_hash(hashed, CONTENT_HASH_LENGTH)}"


def desired_state(
    spec: DeploymentSpec,
    owner: Owner,
    artifacts: Artifacts,
    *,
    execution_role_arn: str,
) -> DesiredState:
    endpoint = endpoint_name(owner, spec)
    tags = {**spec.endpoint.tags, **owner_tags(owner)}
    environment = dict(sorted(spec.endpoint.environment.items()))
    model_content = {
        "image": artifacts.image_uri,
        "modelDataUrl": artifacts.model_data_url,
        "package": artifacts.package_digest,
        "environment": environment,
        "role": execution_role_arn,
    }
    # Options join the content only when set, so names without them stay what they were.
    if extra_model := model_options(spec.endpoint):
        model_content["options"] = extra_model
    model = DesiredModel(
        name=content_name(endpoint, owner, model_content),
        image_uri=artifacts.image_uri,
        model_data_url=artifacts.model_data_url,
        environment=environment,
        execution_role_arn=execution_role_arn,
        tags=tags,
        options=extra_model,
    )
    compute = spec.endpoint.compute
    config_content: dict[str, Any] = {"model": model.name, "compute": compute_payload(compute)}
    if extra_config := endpoint_config_options(spec.endpoint):
        config_content["options"] = extra_config
    config = DesiredEndpointConfig(
        name=content_name(endpoint, owner, config_content),
        model_name=model.name,
        compute=compute,
        tags=tags,
        options=extra_config,
    )
    return DesiredState(
        model=model,
        config=config,
        endpoint=DesiredEndpoint(
            name=endpoint,
            config_name=config.name,
            tags=tags,
            update_options=update_endpoint_options(spec.endpoint),
        ),
    )


def compute_payload(compute: InstanceCompute | ServerlessCompute) -> dict[str, Any]:
    if isinstance(compute, ServerlessCompute):
        serverless: dict[str, Any] = {
            "memorySizeInMB": compute.memory_size_mb,
            "maxConcurrency": compute.max_concurrency,
        }
        if compute.provisioned_concurrency is not None:
            serverless["provisionedConcurrency"] = compute.provisioned_concurrency
        return {"serverless": serverless}
    # The count is capacity, applied in place (capacity.py), not content: hashed as 1 so that a
    # count change keeps the config, and names made before that (all counts hashed) of
    # one-instance configs stay the same.
    return {"instanceType": compute.instance_type, "instanceCount": 1}


def production_variant(config: DesiredEndpointConfig) -> dict[str, Any]:
    """The one ProductionVariant of CreateEndpointConfig, in the API's own shape."""
    variant: dict[str, Any] = {"VariantName": VARIANT_NAME, "ModelName": config.model_name}
    if isinstance(config.compute, ServerlessCompute):
        variant["ServerlessConfig"] = {
            "MemorySizeInMB": config.compute.memory_size_mb,
            "MaxConcurrency": config.compute.max_concurrency,
        }
        if config.compute.provisioned_concurrency is not None:
            variant["ServerlessConfig"]["ProvisionedConcurrency"] = (
                config.compute.provisioned_concurrency
            )
    else:
        variant["InstanceType"] = config.compute.instance_type
        variant["InitialInstanceCount"] = config.compute.instance_count
        variant["InitialVariantWeight"] = 1.0
    return variant


def owner_prefix(prefix: str, owner: Owner) -> str:
    """Where packages were kept per owner before they were shared (package_refs.py): still
    listed and emptied by its clean-up, so that nothing uploaded then is left behind."""
    return f"{prefix.strip('/')}/{owner.namespace}/{owner.name}-{owner.uid}/"


def source_key(spec: DeploymentSpec, limits: ServingLimits | None = None) -> str:
    """Identity of what gets packaged: a change here means packaging again. The operator's
    serving limits count only where it builds the package (not for an mlflow source, served with
    its own model_config), and only when not the defaults: those keep the key they always had."""
    identity: dict[str, Any] = {"source": repr(spec.source), "inference": repr(spec.inference)}
    if (
        limits is not None
        and limits != ServingLimits()
        and not isinstance(spec.source, MlflowSource)
    ):
        identity["servingLimits"] = limits.to_dict()
    if spec.source_version:  # spec.model.refresh OnResync: what the source holds now
        identity["sourceVersion"] = spec.source_version
    if spec.source_reader:
        identity["sourceReader"] = spec.source_reader
    return short_hash(identity, 16)
