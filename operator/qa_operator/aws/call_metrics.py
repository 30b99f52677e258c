"""Counts every AWS call and attempt a client makes, through botocore's own event hooks.

`after-call`/`after-call-error` fire once per API call, after the SDK's retries; `needs-retry`
fires after each HTTP attempt, so a throttle the SDK retried away is still counted. The handlers
return None, which leaves botocore's retry decision to its retry handler.
"""

from __future__ import annotations

from typing import Any

from botocore.retries.standard import ThrottledRetryableChecker

from qa_operator import metrics

# botocore's own list of the error codes that mean "throttled" (its standard retry mode's), so
# that what we count as a throttle is what the SDK backs off on. Untyped: a private class field.
THROTTLE_CODES: frozenset[str] = frozenset(
    getattr(
        ThrottledRetryableChecker, "_THROTTLED_ERROR_CODES", ("Throttling", "ThrottlingException")
    )
)


def outcome(status: int, error_code: str | None) -> str:
    if error_code in THROTTLE_CODES or status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    if status >= 300 or error_code:
        return "client_error"
    return "success"


def _response_outcome(http_response: Any, parsed: Any) -> str:
    code = (parsed or {}).get("Error", {}).get("Code") if isinstance(parsed, dict) else None
    return outcome(int(getattr(http_response, "status_code", 0) or 0), code)


def instrument(client: Any) -> Any:
    """Register the counters on this client's events; return the client."""
    service = client.meta.service_model.service_name

    def after_call(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        metrics.record_aws_call(service, model.name, _response_outcome(http_response, parsed))

    def after_call_error(event_name: str, **_: Any) -> None:
        metrics.record_aws_call(service, event_name.rsplit(".", 1)[-1], "connection_error")

    def attempt(operation: Any, response: Any, caught_exception: Any, **_: Any) -> None:
        if caught_exception is not None or response is None:
            result = "connection_error"
        else:
            result = _response_outcome(*response)
        metrics.record_aws_attempt(service, operation.name, result)

    events = client.meta.events
    events.register("after-call", after_call)
    events.register("after-call-error", after_call_error)
    events.register("needs-retry", attempt)
    return client
