"""Errors the reconciler acts on: what to tell the user, and whether to try again."""

from __future__ import annotations

import re

INTERNAL_ERROR = "InternalError"
MAX_MESSAGE = 300
# Whatever might be a credential in an exception's text: userinfo in URLs, key=value pairs with
# secret-sounding keys, AWS access key ids, bearer tokens.
_SECRETS = (
    (re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)"), "***:***"),
    (
        re.compile(
            r"(?i)\b([\w-]*(?:password|passwd|secret|token|credential|api[_-]?key)[\w-]*)"
            r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;]+)"
        ),
        r"\1\2***",
    ),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), "***"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
)


class OperatorError(Exception):
    """A failure with a CamelCase `reason` for conditions and events, and a human message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class TerminalError(OperatorError):
    """Only a change of spec, account or permissions can fix this: report it, do not hot-loop."""


class RetryableError(OperatorError):
    """Throttling, a 5xx, a dropped connection: try again with backoff."""


def describe_exception(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """`Type: message` of an unexpected exception, fit for status: one line, secrets masked,
    at most `limit` characters."""
    text = " ".join(str(exc).split())
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described if len(described) <= limit else described[: limit - 3] + "..."
