"""The Service Quotas extension (devstack/moto_ext/servicequotas.py) through a real boto3 client."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from support.aws import MotoServer


def test_list_service_quotas_pages_the_registered_quotas(aws: MotoServer) -> None:
    names = {f"ml.m5.{size} for endpoint usage": float(i) for i, size in enumerate("abcde")}
    aws.set_service_quotas("sagemaker", names)
    quotas = aws.client("service-quotas")
    first = quotas.list_service_quotas(ServiceCode="sagemaker", MaxResults=3)
    second = quotas.list_service_quotas(
        ServiceCode="sagemaker", MaxResults=3, NextToken=first["NextToken"]
    )
    listed = first["Quotas"] + second["Quotas"]
    assert "NextToken" not in second
    assert {q["QuotaName"]: q["Value"] for q in listed} == names
    assert {q["ServiceName"] for q in listed} == {"Amazon SageMaker"}
    assert all(q["QuotaArn"].endswith(f"sagemaker/{q['QuotaCode']}") for q in listed)
    assert aws.calls("servicequotas", "ListServiceQuotas") == 2


def test_an_unregistered_service_code_is_no_such_resource(aws: MotoServer) -> None:
    with pytest.raises(ClientError) as error:
        aws.client("service-quotas").list_service_quotas(ServiceCode="sagemaker")
    assert error.value.response["Error"]["Code"] == "NoSuchResourceException"
