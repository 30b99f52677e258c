"""The AWS error table: botocore exceptions built directly, no network."""

from __future__ import annotations

import re

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    ReadTimeoutError,
)

from qa_operator.aws.errors import (
    ErrorClass,
    as_operator_error,
    classify,
    error_code,
    error_message,
    is_class,
    is_retryable_aws,
)
from qa_operator.errors import OperatorError, RetryableError, TerminalError

NOT_FOUND = ErrorClass.NOT_FOUND
EXISTS = ErrorClass.ALREADY_EXISTS
TERMINAL = ErrorClass.TERMINAL
RETRYABLE = ErrorClass.RETRYABLE
# Condition reasons by the Kubernetes API conventions.
REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def client_error(
    code: str | None,
    message: str = "",
    status: int | None = 400,
    operation: str = "DescribeEndpoint",
) -> ClientError:
    error: dict[str, str] = {"Message": message}
    if code is not None:
        error["Code"] = code
    response: dict = {"Error": error}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, operation)  # type: ignore[arg-type]


CASES: list[tuple[str, BaseException, ErrorClass]] = [
    (
        "describe-endpoint-missing",
        client_error(
            "ValidationException",
            'Could not find endpoint "arn:aws:sagemaker:us-east-1:123456789012:endpoint/qa".',
        ),
        NOT_FOUND,
    ),
    (
        "describe-model-missing",
        client_error("ValidationException", 'Could not find model "qa-1234".', operation="X"),
        NOT_FOUND,
    ),
    (
        "config-does-not-exist",
        client_error("ValidationException", "Endpoint configuration qa-1 does not exist."),
        NOT_FOUND,
    ),
    (
        "create-existing-model",
        client_error(
            "ValidationException",
            'Cannot create already existing model "arn:aws:sagemaker:...:model/qa-1".',
            operation="CreateModel",
        ),
        EXISTS,
    ),
    (
        "create-existing-endpoint",
        client_error("ValidationException", "Endpoint qa already exists.", operation="X"),
        EXISTS,
    ),
    (
        "other-validation",
        client_error(
            "ValidationException",
            "1 validation error detected: Value 'ml.bogus' at 'instanceType' failed",
        ),
        TERMINAL,
    ),
    (
        "validation-case-sensitive-fragment",
        client_error("ValidationException", "could NOT FIND what you asked for"),
        TERMINAL,
    ),
    ("access-denied", client_error("AccessDenied", "not authorized", 403), TERMINAL),
    ("access-denied-exception", client_error("AccessDeniedException", "", 403), TERMINAL),
    ("limit-exceeded", client_error("ResourceLimitExceeded", "account limit", 400), TERMINAL),
    ("expired-token", client_error("ExpiredTokenException", "", 403), TERMINAL),
    ("no-such-bucket", client_error("NoSuchBucket", "", 404), TERMINAL),
    ("throttling-exception", client_error("ThrottlingException", "Rate exceeded"), RETRYABLE),
    ("throttling", client_error("Throttling", "Rate exceeded"), RETRYABLE),
    ("s3-slow-down", client_error("SlowDown", "", 503), RETRYABLE),
    ("internal-failure", client_error("InternalFailure", "", 500), RETRYABLE),
    ("no-such-key", client_error("NoSuchKey", "", 404), NOT_FOUND),
    ("head-object-404", client_error("404", "Not Found", 404, "HeadObject"), NOT_FOUND),
    ("ecr-repo-missing", client_error("RepositoryNotFoundException", ""), NOT_FOUND),
    ("ecr-repo-exists", client_error("RepositoryAlreadyExistsException", ""), EXISTS),
    ("bucket-owned", client_error("BucketAlreadyOwnedByYou", "", 409), EXISTS),
    ("unknown-503", client_error("SomethingNew", "try later", 503), RETRYABLE),
    ("unknown-500", client_error("SomethingNew", "", 500), RETRYABLE),
    ("unknown-429", client_error("SomethingNew", "", 429), RETRYABLE),
    ("unknown-400", client_error("SomethingNew", "", 400), TERMINAL),
    ("unknown-no-metadata", client_error("SomethingNew", "", None), TERMINAL),
    ("table-beats-http-status", client_error("AccessDenied", "", 503), TERMINAL),
    ("no-code-500", client_error(None, "", 500), RETRYABLE),
    ("endpoint-connection", EndpointConnectionError(endpoint_url="https://api.sm"), RETRYABLE),
    ("connect-timeout", ConnectTimeoutError(endpoint_url="https://api.sm"), RETRYABLE),
    (
        "read-timeout",
        ReadTimeoutError(endpoint_url="https://api.sm", error="timed out"),
        RETRYABLE,
    ),
    (
        "connection-closed",
        ConnectionClosedError(endpoint_url="https://api.sm"),
        RETRYABLE,
    ),
    ("no-credentials", NoCredentialsError(), TERMINAL),
    ("not-aws", KeyError("x"), TERMINAL),
]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [pytest.param(exc, kind, id=case) for case, exc, kind in CASES],
)
def test_classify(exc: BaseException, expected: ErrorClass) -> None:
    assert classify(exc) is expected


@pytest.mark.parametrize(
    ("exc", "expected"),
    [pytest.param(exc, kind, id=case) for case, exc, kind in CASES],
)
def test_as_operator_error(exc: BaseException, expected: ErrorClass) -> None:
    error = as_operator_error(exc, "DescribeEndpoint")
    assert isinstance(error, OperatorError)
    wanted = RetryableError if expected is RETRYABLE else TerminalError
    assert type(error) is wanted
    assert error.reason.startswith("Aws")
    assert REASON.match(error.reason), error.reason
    assert error.message.startswith(f"DescribeEndpoint: {error_code(exc)}: ")
    assert str(error) == error.message


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (client_error("ValidationException", "x"), "AwsValidationException"),
        (client_error("ThrottlingException", "x"), "AwsThrottlingException"),
        (client_error("404", "Not Found", 404), "Aws404"),
        (client_error("access-denied.by_policy", "x", 403), "AwsAccessDeniedByPolicy"),
        (client_error("", "x", 500), "AwsError"),
        (client_error(None, "x", 500), "AwsUnknown"),
        (EndpointConnectionError(endpoint_url="https://x"), "AwsEndpointConnectionError"),
        (NoCredentialsError(), "AwsNoCredentialsError"),
    ],
)
def test_reason_is_camel_case(exc: BaseException, reason: str) -> None:
    assert as_operator_error(exc, "Op").reason == reason


def test_message_names_the_call_code_and_aws_message() -> None:
    exc = client_error("ResourceLimitExceeded", "The account-level service limit is 2 instances")
    error = as_operator_error(exc, "CreateEndpoint")
    assert isinstance(error, TerminalError)
    assert error.message == (
        "CreateEndpoint: ResourceLimitExceeded: The account-level service limit is 2 instances"
    )


def test_error_message_falls_back_to_the_exception_text() -> None:
    exc = client_error("InternalFailure", "", 500, operation="UpdateEndpoint")
    assert error_message(exc) == str(exc)
    assert "UpdateEndpoint" in error_message(exc)


def test_is_class_and_is_retryable_aws() -> None:
    missing = client_error("ValidationException", "Could not find endpoint qa")
    assert is_class(missing, NOT_FOUND)
    assert not is_class(missing, TERMINAL)
    assert not is_class(KeyError("Could not find"), TERMINAL), "only AWS SDK errors are classed"
    assert is_retryable_aws(client_error("ThrottlingException")) is True
    assert is_retryable_aws(EndpointConnectionError(endpoint_url="https://x")) is True
    assert is_retryable_aws(client_error("AccessDenied", "", 403)) is False
    assert is_retryable_aws(ValueError("not aws")) is None


@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(ParamValidationError(report="Invalid type for parameter Tags"), id="params"),
        pytest.param(NoRegionError(), id="no-region"),
    ],
)
def test_client_side_configuration_errors_are_terminal(exc: BaseException) -> None:
    assert classify(exc) is TERMINAL
