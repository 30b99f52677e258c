"""One table that classifies AWS errors: not-found is a value, the rest terminal or retryable.

Rows are (error code, message fragment or None, class). The first row that matches wins, so the
specific SageMaker ValidationException rows come before the catch-all for that code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from qa_operator.errors import OperatorError, RetryableError, TerminalError


class ErrorClass(enum.Enum):
    NOT_FOUND = "not-found"
    ALREADY_EXISTS = "already-exists"
    TERMINAL = "terminal"
    RETRYABLE = "retryable"


ERROR_TABLE: tuple[tuple[str, str | None, ErrorClass], ...] = (
    ("ValidationException", "Could not find", ErrorClass.NOT_FOUND),
    ("ValidationException", "does not exist", ErrorClass.NOT_FOUND),
    ("ValidationException", "Cannot create already existing", ErrorClass.ALREADY_EXISTS),
    ("ValidationException", "already exists", ErrorClass.ALREADY_EXISTS),
    ("ValidationException", None, ErrorClass.TERMINAL),
    ("ResourceNotFound", None, ErrorClass.NOT_FOUND),
    ("ResourceNotFoundException", None, ErrorClass.NOT_FOUND),
    ("NoSuchKey", None, ErrorClass.NOT_FOUND),
    ("NotFound", None, ErrorClass.NOT_FOUND),
    ("404", None, ErrorClass.NOT_FOUND),
    ("RepositoryNotFoundException", None, ErrorClass.NOT_FOUND),
    ("RepositoryAlreadyExistsException", None, ErrorClass.ALREADY_EXISTS),
    ("BucketAlreadyOwnedByYou", None, ErrorClass.ALREADY_EXISTS),
    ("ResourceInUse", None, ErrorClass.ALREADY_EXISTS),
    ("AccessDenied", None, ErrorClass.TERMINAL),
    ("AccessDeniedException", None, ErrorClass.TERMINAL),
    ("UnrecognizedClientException", None, ErrorClass.TERMINAL),
    ("InvalidClientTokenId", None, ErrorClass.TERMINAL),
    ("ExpiredToken", None, ErrorClass.TERMINAL),
    ("ExpiredTokenException", None, ErrorClass.TERMINAL),
    ("SignatureDoesNotMatch", None, ErrorClass.TERMINAL),
    ("ResourceLimitExceeded", None, ErrorClass.TERMINAL),
    ("NoSuchBucket", None, ErrorClass.TERMINAL),
    ("InvalidParameterValue", None, ErrorClass.TERMINAL),
    ("ThrottlingException", None, ErrorClass.RETRYABLE),
    ("Throttling", None, ErrorClass.RETRYABLE),
    ("TooManyRequestsException", None, ErrorClass.RETRYABLE),
    ("RequestLimitExceeded", None, ErrorClass.RETRYABLE),
    ("SlowDown", None, ErrorClass.RETRYABLE),
    ("ServiceUnavailable", None, ErrorClass.RETRYABLE),
    ("InternalFailure", None, ErrorClass.RETRYABLE),
    ("InternalError", None, ErrorClass.RETRYABLE),
    ("InternalServerError", None, ErrorClass.RETRYABLE),
)

TRANSPORT_ERRORS = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ReadTimeoutError,
    ConnectionClosedError,
)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message", "")) or str(exc)
    return str(exc)


def classify(exc: BaseException) -> ErrorClass:
    if isinstance(exc, TRANSPORT_ERRORS):
        return ErrorClass.RETRYABLE
    if isinstance(exc, NoCredentialsError):
        return ErrorClass.TERMINAL
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = error_message(exc)
        for row_code, fragment, kind in ERROR_TABLE:
            if code == row_code and (fragment is None or fragment in message):
                return kind
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return ErrorClass.RETRYABLE if status >= 500 or status == 429 else ErrorClass.TERMINAL
    # Any other SDK error is raised before a request is sent (bad parameters, no region,
    # partial credentials): retrying cannot help.
    return ErrorClass.TERMINAL


def as_operator_error(exc: BaseException, operation: str) -> OperatorError:
    """An AWS failure in the operator's terms: a CamelCase reason and a message naming the call."""
    code = error_code(exc)
    reason = "Aws" + "".join(part[:1].upper() + part[1:] for part in _words(code))
    message = f"{operation}: {code}: {error_message(exc)}"
    if classify(exc) is ErrorClass.RETRYABLE:
        return RetryableError(reason, message)
    return TerminalError(reason, message)


def _words(code: str) -> list[str]:
    cleaned = "".join(ch if ch.isalnum() else " " for ch in code)
    return cleaned.split() or ["Error"]


def is_class(exc: BaseException, kind: ErrorClass) -> bool:
    return isinstance(exc, ClientError | BotoCoreError) and classify(exc) is kind


def is_retryable_aws(exc: BaseException) -> bool | None:
    """None when `exc` is not an AWS SDK error at all; else whether retrying may help."""
    if not isinstance(exc, ClientError | BotoCoreError):
        return None
    return classify(exc) is ErrorClass.RETRYABLE


T = TypeVar("T")


def aws_call(operation: str, fn: Callable[[], T]) -> T:
    """Run one SDK call; any failure comes back in the operator's terms."""
    try:
        return fn()
    except (ClientError, BotoCoreError) as exc:
        raise as_operator_error(exc, operation) from exc


def aws_call_or_none(operation: str, fn: Callable[[], T]) -> T | None:
    """Like aws_call, but not-found is a value (None), not an error."""
    try:
        return fn()
    except (ClientError, BotoCoreError) as exc:
        if classify(exc) is ErrorClass.NOT_FOUND:
            return None
        raise as_operator_error(exc, operation) from exc
