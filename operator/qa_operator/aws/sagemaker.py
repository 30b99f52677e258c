"""SageMaker adapter: observe, create, update and delete, each idempotent.

Not-found comes back as None or False, never as an exception. A create that finds its
deterministic name taken is a success when the existing resource is ours (an earlier pass whose
result was lost) and a conflict otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from qa_operator.aws.errors import (
    ErrorClass,
    as_operator_error,
    aws_call,
    aws_call_or_none,
    classify,
)
from qa_operator.aws.observation import Described, RegionObservations
from qa_operator.desired import (
    CONTENT_HASH_LENGTH,
    DesiredEndpoint,
    DesiredEndpointConfig,
    DesiredModel,
    Owner,
    is_owned_by,
    production_variant,
)
from qa_operator.errors import TerminalError
from qa_operator.observation import EndpointSummary, Look, how_to_observe, own_content_names
from qa_operator.plan import ObservedEndpoint


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


class SageMakerGateway:
    """`observations` (shared by every pass in the region) lets resyncs read the shared
    ListEndpoints snapshot and the cached tags instead of asking SageMaker for each endpoint."""

    def __init__(self, client: Any, observations: RegionObservations | None = None) -> None:
        self._client = client
        self._observations = observations

    def tags(self, arn: str) -> dict[str, str]:
        tags: dict[str, str] = {}
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"ResourceArn": arn}
            if token:
                kwargs["NextToken"] = token
            page = aws_call("ListTags", lambda kw=kwargs: self._client.list_tags(**kw))  # type: ignore[misc]
            tags.update({t["Key"]: t["Value"] for t in page.get("Tags", [])})
            token = page.get("NextToken")
            if not token:
                return tags

    def _endpoint_tags(self, arn: str, created: Any) -> dict[str, str]:
        """An endpoint's tags, from the cache while the same endpoint (ARN and CreationTime: a
        name deleted and created again is another endpoint) holds them."""
        if self._observations is None:
            return self.tags(arn)
        cached = self._observations.tags.get(arn)
        if cached is not None and cached[0] == created:
            return dict(cached[1])
        tags = self.tags(arn)
        self._observations.tags.put(arn, (created, dict(tags)))
        return tags

    @contextmanager
    def _writing_tags(self, arn: str) -> Iterator[None]:
        """Forget the cached tags once the write is done (or failed: it may have landed)."""
        try:
            yield
        finally:
            if self._observations is not None:
                self._observations.tags.pop(arn)

    @contextmanager
    def writing_endpoint(self, name: str) -> Iterator[None]:
        """Mark the endpoint written once the call returned (or failed: it may have landed), so
        that only a ListEndpoints begun after it is trusted for this endpoint."""
        try:
            yield
        finally:
            if self._observations is not None:
                self._observations.wrote(name)

    def set_tags(self, arn: str, tags: Mapping[str, str]) -> None:
        if tags:
            with self._writing_tags(arn):
                aws_call(
                    "AddTags",
                    lambda: self._client.add_tags(ResourceArn=arn, Tags=_tag_list(tags)),
                )

    def remove_tags(self, arn: str, keys: list[str]) -> None:
        if keys:
            with self._writing_tags(arn):
                aws_call(
                    "DeleteTags",
                    lambda: self._client.delete_tags(ResourceArn=arn, TagKeys=keys),
                )

    def describe_endpoint(self, name: str, owner: Owner) -> ObservedEndpoint | None:
        found = aws_call_or_none(
            "DescribeEndpoint", lambda: self._client.describe_endpoint(EndpointName=name)
        )
        if found is None:
            if self._observations is not None:
                self._observations.described.pop(name)
            return None
        tags = self._endpoint_tags(found["EndpointArn"], found.get("CreationTime"))
        endpoint = ObservedEndpoint(
            name=name,
            arn=found["EndpointArn"],
            status=found["EndpointStatus"],
            config_name=found["EndpointConfigName"],
            failure_reason=found.get("FailureReason") or None,
            tags=tags,
            owned=is_owned_by(tags, owner),
            variant_counts={
                v["VariantName"]: v["DesiredInstanceCount"]
                for v in found.get("ProductionVariants") or ()
                if "DesiredInstanceCount" in v
            },
        )
        if self._observations is not None and "LastModifiedTime" in found:
            summary = EndpointSummary(
                found["EndpointStatus"], found["LastModifiedTime"], found["CreationTime"]
            )
            self._observations.described.put(name, Described(summary, endpoint))
        return endpoint

    def observe_endpoint(
        self, name: str, owner: Owner, *, changing: bool
    ) -> ObservedEndpoint | None:
        """The endpoint as DescribeEndpoint would say, from the shared ListEndpoints snapshot
        and the last description where they show no change (observation.how_to_observe)."""
        observations = self._observations
        if observations is None or changing:
            return self.describe_endpoint(name, owner)
        snapshot = observations.snapshot(self._client)
        described = observations.described.get(name)
        look = how_to_observe(
            snapshot.endpoints.get(name),
            described.summary if described else None,
            changing=changing,
            listed_after_write=observations.listed_after_write(snapshot, name),
        )
        if look is Look.ABSENT:
            return None
        if look is Look.REUSE and described is not None:
            known = described.endpoint
            return ObservedEndpoint(
                name=known.name,
                arn=known.arn,
                status=known.status,
                config_name=known.config_name,
                failure_reason=known.failure_reason,
                tags=dict(known.tags),
                owned=is_owned_by(known.tags, owner),
                variant_counts=known.variant_counts,
            )
        return self.describe_endpoint(name, owner)

    def model_arn(self, name: str) -> str | None:
        found = aws_call_or_none(
            "DescribeModel", lambda: self._client.describe_model(ModelName=name)
        )
        return None if found is None else str(found["ModelArn"])

    def endpoint_config_arn(self, name: str) -> str | None:
        found = aws_call_or_none(
            "DescribeEndpointConfig",
            lambda: self._client.describe_endpoint_config(EndpointConfigName=name),
        )
        return None if found is None else str(found["EndpointConfigArn"])

    def model_exists(self, name: str) -> bool:
        return self.model_arn(name) is not None

    def endpoint_config_exists(self, name: str) -> bool:
        return self.endpoint_config_arn(name) is not None

    def create_model(self, model: DesiredModel, owner: Owner) -> None:
        container: dict[str, Any] = {
            "Image": model.image_uri,
            "Environment": dict(model.environment),
        }
        if model.model_data_url:
            container["ModelDataUrl"] = model.model_data_url
        self._create(
            "CreateModel",
            lambda: self._client.create_model(
                ModelName=model.name,
                PrimaryContainer=container,
                ExecutionRoleArn=model.execution_role_arn,
                Tags=_tag_list(model.tags),
                **model.options,
            ),
            lambda: self._client.describe_model(ModelName=model.name)["ModelArn"],
            owner,
        )

    def create_endpoint_config(self, config: DesiredEndpointConfig, owner: Owner) -> None:
        self._create(
            "CreateEndpointConfig",
            lambda: self._client.create_endpoint_config(
                EndpointConfigName=config.name,
                ProductionVariants=[production_variant(config)],
                Tags=_tag_list(config.tags),
                **config.options,
            ),
            lambda: self._client.describe_endpoint_config(EndpointConfigName=config.name)[
                "EndpointConfigArn"
            ],
            owner,
        )

    def create_endpoint(self, endpoint: DesiredEndpoint, owner: Owner) -> None:
        with self.writing_endpoint(endpoint.name):
            self._create(
                "CreateEndpoint",
                lambda: self._client.create_endpoint(
                    EndpointName=endpoint.name,
                    EndpointConfigName=endpoint.config_name,
                    Tags=_tag_list(endpoint.tags),
                ),
                lambda: self._client.describe_endpoint(EndpointName=endpoint.name)["EndpointArn"],
                owner,
            )

    def _create(
        self,
        operation: str,
        create: Callable[[], Any],
        existing_arn: Callable[[], str],
        owner: Owner,
    ) -> None:
        try:
            create()
        except (ClientError, BotoCoreError) as exc:
            if classify(exc) is not ErrorClass.ALREADY_EXISTS:
                raise as_operator_error(exc, operation) from exc
            arn = aws_call(operation, existing_arn)
            if not is_owned_by(self.tags(arn), owner):
                raise TerminalError(
                    "NameConflict",
                    f"{operation}: {arn} already exists and is not managed by this resource",
                ) from exc

    def update_endpoint(self, name: str, config_name: str, **options: Any) -> None:
        with self.writing_endpoint(name):
            aws_call(
                "UpdateEndpoint",
                lambda: self._client.update_endpoint(
                    EndpointName=name, EndpointConfigName=config_name, **options
                ),
            )

    def delete_endpoint(self, name: str) -> None:
        with self.writing_endpoint(name):
            aws_call_or_none(
                "DeleteEndpoint", lambda: self._client.delete_endpoint(EndpointName=name)
            )

    def delete_model(self, name: str) -> None:
        aws_call_or_none("DeleteModel", lambda: self._client.delete_model(ModelName=name))

    def delete_endpoint_config(self, name: str) -> None:
        aws_call_or_none(
            "DeleteEndpointConfig",
            lambda: self._client.delete_endpoint_config(EndpointConfigName=name),
        )

    def owned_models(self, stem: str, owner: Owner) -> list[str]:
        """The Models named `<stem>-<hash>` (desired.content_name) tagged as `owner`'s."""
        listed = {
            item["ModelName"]: item["ModelArn"]
            for item in self._pages("ListModels", "list_models", "Models", stem)
        }
        return [
            name
            for name in own_content_names(stem, listed, CONTENT_HASH_LENGTH)
            if is_owned_by(self.tags(listed[name]), owner)
        ]

    def owned_endpoint_configs(self, stem: str, owner: Owner) -> list[str]:
        """The EndpointConfigs named `<stem>-<hash>` tagged as `owner`'s."""
        listed = {
            item["EndpointConfigName"]: item["EndpointConfigArn"]
            for item in self._pages(
                "ListEndpointConfigs", "list_endpoint_configs", "EndpointConfigs", stem
            )
        }
        return [
            name
            for name in own_content_names(stem, listed, CONTENT_HASH_LENGTH)
            if is_owned_by(self.tags(listed[name]), owner)
        ]

    def _pages(
        self, operation: str, method: str, key: str, name_contains: str
    ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"NameContains": name_contains, "MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            page = aws_call(
                operation,
                lambda kw=kwargs: getattr(self._client, method)(**kw),  # type: ignore[misc]
            )
            yield from page.get(key, [])
            token = page.get("NextToken")
            if not token:
                return
