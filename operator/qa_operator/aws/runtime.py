"""sagemaker-runtime adapter: one InvokeEndpoint call, its outcome as data.

An answer of any kind (the container's own error, SageMaker's ModelError or ValidationError, no
answer in time) is an `Invocation` for the smoke test to judge. Only trouble on the way there is
raised: throttling and 5xx from SageMaker itself as retryable, access denied as terminal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from qa_operator.aws.errors import (
    ErrorClass,
    as_operator_error,
    classify,
    error_code,
    error_message,
)
from qa_operator.smoke import Invocation

# What SageMaker answers when the endpoint or its container cannot answer: the smoke test fails.
ANSWERED_ERRORS = frozenset({"ModelError", "ValidationError", "ModelNotReadyException"})
CONTENT_TYPE = "application/json"


class SageMakerRuntimeGateway:
    def __init__(self, client: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._clock = clock

    def invoke(self, endpoint_name: str, body: bytes) -> Invocation:
        started = self._clock()

        def elapsed_ms() -> int:
            return int((self._clock() - started) * 1000)

        try:
            response = self._client.invoke_endpoint(
                EndpointName=endpoint_name, Body=body, ContentType=CONTENT_TYPE, Accept=CONTENT_TYPE
            )
            payload = response["Body"].read()
        except ReadTimeoutError:
            return Invocation(None, b"no answer before the read timeout", elapsed_ms(), "Timeout")
        except ClientError as exc:
            code = error_code(exc)
            if code == "ModelError":
                original: Any = exc.response.get("OriginalStatusCode")
                message = exc.response.get("OriginalMessage") or error_message(exc)
                return Invocation(
                    int(original) if original else None, str(message).encode(), elapsed_ms(), code
                )
            if code in ANSWERED_ERRORS or classify(exc) is ErrorClass.NOT_FOUND:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                return Invocation(status, error_message(exc).encode(), elapsed_ms(), code)
            raise as_operator_error(exc, "InvokeEndpoint") from exc
        except BotoCoreError as exc:
            raise as_operator_error(exc, "InvokeEndpoint") from exc
        return Invocation(
            int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 200)),
            payload,
            elapsed_ms(),
        )
