"""The extended moto's SageMaker list calls filter, sort and page as SageMaker does
(devstack/moto_ext/listing.py)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

ROLE = "arn:aws:iam::123456789012:role/sagemaker-execution"
IMAGE = "registry.local/qa@sha256:" + "ab" * 32


def create_models(sm: Any, *names: str) -> list[dt.datetime]:
    """Models created in this order, a little apart; returns each one's CreationTime."""
    created = []
    for name in names:
        sm.create_model(ModelName=name, ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
        created.append(sm.describe_model(ModelName=name)["CreationTime"])
        time.sleep(0.01)
    return created


def all_pages(call: Any, key: str, **kwargs: Any) -> tuple[list[str], int]:
    names: list[str] = []
    pages = 0
    token = None
    while True:
        page = call(**kwargs, **({"NextToken": token} if token else {}))
        pages += 1
        names += [item[key] for item in page[key.replace("Name", "s")]]
        token = page.get("NextToken")
        if not token:
            return names, pages


def test_list_models_honours_name_contains_and_answers_summaries(aws: Any) -> None:
    sm = aws.client("sagemaker")
    create_models(sm, "default-qa-1-aaaa", "default-qa-10-bbbb", "team-b-search-cccc")

    found = sm.list_models(NameContains="default-qa-1")["Models"]

    assert sorted(m["ModelName"] for m in found) == ["default-qa-1-aaaa", "default-qa-10-bbbb"]
    assert set(found[0]) == {"ModelName", "ModelArn", "CreationTime"}
    assert sm.list_models(NameContains="nothing")["Models"] == []


def test_list_models_sorts_descending_by_creation_time_and_pages(aws: Any) -> None:
    sm = aws.client("sagemaker")
    names = [f"model-{i:02d}" for i in range(12)]
    created = create_models(sm, *names)

    default_page = sm.list_models()
    assert [m["ModelName"] for m in default_page["Models"]] == names[::-1][:10]
    assert "NextToken" in default_page, "10 per page unless MaxResults says otherwise"
    listed, pages = all_pages(sm.list_models, "ModelName", MaxResults=5)
    assert (listed, pages) == (names[::-1], 3)
    by_name, _ = all_pages(sm.list_models, "ModelName", SortBy="Name", SortOrder="Ascending")
    assert by_name == names
    assert created == sorted(created)


def test_list_models_filters_by_creation_time(aws: Any) -> None:
    sm = aws.client("sagemaker")
    create_models(sm, "old-0", "old-1")
    time.sleep(1.1)  # timestamps travel with a second's or a millisecond's precision
    cut = dt.datetime.now(dt.UTC)
    time.sleep(0.1)
    create_models(sm, "new-0", "new-1")

    after = sm.list_models(CreationTimeAfter=cut, MaxResults=100)["Models"]
    assert [m["ModelName"] for m in after] == ["new-1", "new-0"]
    before = sm.list_models(CreationTimeBefore=cut, MaxResults=100)["Models"]
    assert [m["ModelName"] for m in before] == ["old-1", "old-0"]


def test_endpoints_and_configs_list_newest_first_by_default(aws: Any) -> None:
    sm = aws.client("sagemaker")
    create_models(sm, "m")
    configs = [f"config-{i}" for i in range(3)]
    for config in configs:
        sm.create_endpoint_config(
            EndpointConfigName=config,
            ProductionVariants=[
                {
                    "VariantName": "primary",
                    "ModelName": "m",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
        sm.create_endpoint(EndpointName=f"endpoint-{config}", EndpointConfigName=config)
        time.sleep(0.01)

    listed = [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]]
    assert listed == configs[::-1]
    endpoints = [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]]
    assert endpoints == [f"endpoint-{c}" for c in configs[::-1]]
    ascending = sm.list_endpoints(SortOrder="Ascending", NameContains="config-1")["Endpoints"]
    assert [e["EndpointName"] for e in ascending] == ["endpoint-config-1"]
