"""Preflight facts from IAM, STS, ECR, S3 and Service Quotas (judged in preflight.py).

Each look-up answers a value: not found is None; a fact the caller may not read (access denied,
an API the region or the stand-in does not offer) is `Unreadable`, so that its check is skipped
politely. Only throttling and transport errors are raised (retryable), as everywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from qa_operator.aws.errors import ErrorClass, as_operator_error, classify, error_code
from qa_operator.preflight import Facts, Unreadable, role_for_simulation

ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[^@:]+)(?:@(?P<digest>sha256:[0-9a-f]{64})|:(?P<tag>[\w.-]+))?$"
)
SAGEMAKER_QUOTAS = "sagemaker"
T = TypeVar("T")
AwsClient = Callable[[str], Any]  # service name -> boto3 client for the endpoint's region


def _ask(operation: str, call: Callable[[], T]) -> T | Unreadable | None:
    try:
        return call()
    except (ClientError, BotoCoreError) as exc:
        kind = classify(exc)
        if kind is ErrorClass.NOT_FOUND or error_code(exc) in (
            "NoSuchEntity",
            "ImageNotFoundException",
        ):
            return None
        if kind is ErrorClass.RETRYABLE and not _not_offered(exc):
            raise as_operator_error(exc, operation) from exc
        return Unreadable(f"{operation}: {error_code(exc)}")
    except ResponseParserError:
        return Unreadable(f"{operation}: no parseable answer (not offered here)")


def _not_offered(exc: BaseException) -> bool:
    """An API the endpoint does not implement (a stand-in, a partition without it)."""
    return isinstance(exc, ClientError) and (
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (404, 501)
        or error_code(exc) in ("NotImplemented", "InternalFailure", "500")
    )


class PreflightGateway:
    def __init__(self, client: AwsClient) -> None:
        self._client = client

    def facts(
        self,
        *,
        role_arn: str,
        image_uri: str,
        package_url: str | None,
        instance_type: str | None,
        instance_count: int,
    ) -> Facts:
        return Facts(
            role_arn=role_arn,
            role=self.role(role_arn),
            may_pass_role=self.may_pass_role(role_arn),
            image_uri=image_uri,
            image_found=self.image_found(image_uri),
            package_url=package_url,
            package_size=self.package_size(package_url) if package_url else None,
            instance_type=instance_type,
            instance_count=instance_count,
            quota=self.endpoint_quota(instance_type) if instance_type else None,
        )

    def role(self, role_arn: str) -> dict[str, Any] | Unreadable | None:
        name = role_arn.rsplit("/", 1)[-1]
        found = _ask("iam:GetRole", lambda: self._client("iam").get_role(RoleName=name))
        if found is None or isinstance(found, Unreadable):
            return found
        role: dict[str, Any] = found["Role"]
        return role

    def may_pass_role(self, role_arn: str) -> bool | Unreadable | None:
        caller = _ask("sts:GetCallerIdentity", lambda: self._client("sts").get_caller_identity())
        if caller is None or isinstance(caller, Unreadable):
            return caller
        source = role_for_simulation(str(caller["Arn"]))
        answer = _ask(
            "iam:SimulatePrincipalPolicy",
            lambda: self._client("iam").simulate_principal_policy(
                PolicySourceArn=source, ActionNames=["iam:PassRole"], ResourceArns=[role_arn]
            ),
        )
        if answer is None or isinstance(answer, Unreadable):
            return (
                Unreadable("iam:SimulatePrincipalPolicy: no answer") if answer is None else answer
            )
        results = answer.get("EvaluationResults") or []
        return bool(results) and all(r.get("EvalDecision") == "allowed" for r in results)

    def image_found(self, image_uri: str) -> bool | Unreadable | None:
        match = ECR_IMAGE.match(image_uri)
        if match is None:
            return None  # not an ECR image: nothing to ask
        image_id = (
            {"imageDigest": match["digest"]}
            if match["digest"]
            else {"imageTag": match["tag"] or "latest"}
        )
        found = _ask(
            "ecr:DescribeImages",
            lambda: self._client("ecr").describe_images(
                registryId=match["account"], repositoryName=match["repository"], imageIds=[image_id]
            ),
        )
        if isinstance(found, Unreadable):
            return found
        return bool(found and found.get("imageDetails"))

    def package_size(self, url: str) -> int | Unreadable | None:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        found = _ask(
            "s3:HeadObject", lambda: self._client("s3").head_object(Bucket=bucket, Key=key)
        )
        if found is None or isinstance(found, Unreadable):
            return found
        return int(found["ContentLength"])

    def endpoint_quota(self, instance_type: str) -> float | Unreadable | None:
        """The applied quota "<type> for endpoint usage"; None when SageMaker lists none for that
        type in this region (it is not offered there)."""
        wanted = f"{instance_type} for endpoint usage"
        quotas = self._client("service-quotas")
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"ServiceCode": SAGEMAKER_QUOTAS, "MaxResults": 100}
            if token:
                kwargs["NextToken"] = token
            page = _ask(
                "servicequotas:ListServiceQuotas",
                lambda kw=kwargs: quotas.list_service_quotas(**kw),  # type: ignore[misc]
            )
            if page is None:
                return Unreadable("servicequotas:ListServiceQuotas: no SageMaker quotas listed")
            if isinstance(page, Unreadable):
                return page
            for quota in page.get("Quotas", []):
                if quota.get("QuotaName") == wanted:
                    return float(quota["Value"])
            token = page.get("NextToken")
            if not token:
                return None
