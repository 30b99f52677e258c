"""Errors the reconciler acts on: what to tell the user, and whether to try again."""

from __future__ import annotations


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
