"""WSGI middleware that makes chosen AWS operations throttle, fail with 5xx, or slow down.

It sits in front of moto's app, so it sees each request as the wire carries it. The service is
the signing name in the SigV4 credential scope (`sagemaker`, `s3`, `ecr`, `sts`); the operation is
the API name (`CreateEndpoint`, `PutObject`): from `X-Amz-Target` for JSON protocols, from
`Action` for query protocols (STS), from method + path + query for S3's REST protocol, and from
the path for SageMaker Runtime's REST-JSON one (`InvokeEndpoint`, signed for `sagemaker` too).

Error bodies are shaped per protocol the way the real services send them, so botocore parses
them into the usual `ClientError` codes (and its retry logic classifies them as it would in AWS):

- throttle: JSON and REST-JSON services -> HTTP 400 `ThrottlingException`; query (STS) -> HTTP 400
  `Throttling`; S3 -> HTTP 503 `SlowDown` (S3's real throttling answer).
- 5xx: HTTP 500 `InternalFailure` (S3: `InternalError`) or HTTP 503 `ServiceUnavailable`.
- latency: sleep, then serve the request normally.
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from .callers import Caller, caller_of
from .controls import CONTROLS, Controls, Fault

log = logging.getLogger("moto_ext")

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
_SAGEMAKER_RUNTIME = {
    re.compile(r"^/endpoints/[^/]+/invocations$"): "InvokeEndpoint",
    re.compile(r"^/endpoints/[^/]+/async-invocations$"): "InvokeEndpointAsync",
}


def service_of(environ: dict[str, Any]) -> str | None:
    match = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    return match.group(1) if match else None


def _s3_operation(method: str, path: str, query: dict[str, list[str]], environ: Any) -> str:
    parts = [p for p in path.split("/", 2) if p]
    if not parts:
        return "ListBuckets"
    if len(parts) == 1:  # bucket
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        if method == "GET":
            return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
        bucket_ops = {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}
        return bucket_ops.get(method, method)
    if "uploadId" in query:
        upload_ops = {
            "PUT": "UploadPart",
            "POST": "CompleteMultipartUpload",
            "DELETE": "AbortMultipartUpload",
            "GET": "ListParts",
        }
        return upload_ops.get(method, method)
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    if method == "PUT" and "HTTP_X_AMZ_COPY_SOURCE" in environ:
        return "CopyObject"
    key_ops = {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject"}
    return key_ops.get(method, "DeleteObject" if method == "DELETE" else method)


def operation_of(environ: dict[str, Any], service: str) -> tuple[str, str]:
    """(operation, protocol) of a request; protocol is "json", "rest-json", "query" or
    "rest-xml"."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return target.rsplit(".", 1)[-1], "json"
    if service == "sagemaker" and environ.get("REQUEST_METHOD") == "POST":
        path = environ.get("PATH_INFO", "")
        for pattern, operation in _SAGEMAKER_RUNTIME.items():
            if pattern.match(path):
                return operation, "rest-json"
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    if service == "s3":
        method = environ.get("REQUEST_METHOD", "GET")
        return _s3_operation(method, environ.get("PATH_INFO", "/"), query, environ), "rest-xml"
    if "Action" in query:
        return query["Action"][0], "query"
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # let moto read it again
        action = parse_qs(body.decode("utf-8", "replace")).get("Action")
        if action:
            return action[0], "query"
    return "Unknown", "json"


def _error(fault: Fault, protocol: str) -> tuple[str, str, bytes, str]:
    """(status line, error code, body, content type) for a throttle or 5xx fault."""
    if fault.kind == "throttle":
        status, code = {
            "json": (400, "ThrottlingException"),
            "rest-json": (400, "ThrottlingException"),
            "query": (400, "Throttling"),
            "rest-xml": (503, "SlowDown"),
        }[protocol]
        message = "Rate exceeded"
    elif fault.http_status == 503:
        status, code, message = 503, "ServiceUnavailable", "Service is unavailable"
    else:
        status = fault.http_status
        code = "InternalError" if protocol == "rest-xml" else "InternalFailure"
        message = "We encountered an internal error. Please try again."
    request_id = str(uuid.uuid4())
    reason = {400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}
    status_line = f"{status} {reason.get(status, 'Error')}"
    if protocol == "json":
        body = json.dumps({"__type": code, "message": message}).encode()
        return status_line, code, body, "application/x-amz-json-1.1"
    if protocol == "rest-json":
        return status_line, code, json.dumps({"message": message}).encode(), "application/json"
    error = f"<Code>{code}</Code><Message>{message}</Message>"
    if protocol == "query":
        xml = (
            f"<ErrorResponse><Error><Type>{'Sender' if status < 500 else 'Receiver'}</Type>"
            f"{error}</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    else:
        xml = f"<Error>{error}<RequestId>{request_id}</RequestId></Error>"
    return status_line, code, xml.encode(), "text/xml"


class FaultInjector:
    """Wraps a WSGI app; consults `controls` on every signed request."""

    def __init__(
        self,
        app: Any,
        controls: Controls = CONTROLS,
        caller: Callable[[dict[str, Any]], Caller] = caller_of,
    ) -> None:
        self.app = app
        self.controls = controls
        self.caller = caller

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        service = service_of(environ)
        if service is None:  # moto's own API (/moto-api/...), unsigned
            return self.app(environ, start_response)
        operation, protocol = operation_of(environ, service)
        log.info("request: %s %s", service, operation)
        self.controls.record_caller(service, operation, self.caller(environ))
        fault = self.controls.fault_for(service, operation)
        if fault is None:
            return self.app(environ, start_response)
        if fault.kind == "latency":
            log.info("fault: %s %s delayed %.3fs", service, operation, fault.latency_s)
            time.sleep(fault.latency_s)
            return self.app(environ, start_response)
        status_line, code, body, content_type = _error(fault, protocol)
        if environ.get("REQUEST_METHOD") == "HEAD":
            body = b""  # HEAD answers carry no body; botocore reads the status code
        log.info("fault: %s %s answered %s %s", service, operation, status_line, code)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if protocol in ("json", "rest-json"):
            headers.append(("x-amzn-ErrorType", code))
        start_response(status_line, headers)
        return [body]
