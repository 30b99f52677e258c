"""spec.endpoint.timeouts: how long CreateEndpoint and UpdateEndpoint may take (deadlines.py
judges them). Apart from spec.py so that both it and deadlines.py can import it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
OnTimeout = Literal["Fail", "Delete"]


def parse_duration(text: str) -> float:
    """Seconds in "90m", "1h30m", "45s"; ValueError for anything else (or zero)."""
    found = DURATION.match(text) if isinstance(text, str) else None
    if not text or found is None:
        raise ValueError(f"{text!r} is not a duration such as 60m, 1h30m or 90s")
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValueError(f"{text!r}: a timeout must be longer than zero")
    return float(total)


@dataclass(frozen=True)
class Timeouts:
    """spec.endpoint.timeouts; None takes the operator's default for that operation."""

    create_seconds: float | None = None
    update_seconds: float | None = None
    on_timeout: OnTimeout = "Fail"


def parse_timeouts(raw: Mapping[str, Any] | None) -> Timeouts:
    """ValueError(field, message) for bad input; the spec parser turns it into a SpecError."""
    raw = raw or {}
    values: dict[str, float | None] = {}
    for key in ("create", "update"):
        value = raw.get(key)
        if value is None:
            values[key] = None
            continue
        try:
            values[key] = parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"endpoint.timeouts.{key}", str(exc)) from exc
    on_timeout = raw.get("onTimeout", "Fail")
    if on_timeout not in ("Fail", "Delete"):
        raise ValueError(
            "endpoint.timeouts.onTimeout", f"must be Fail or Delete, not {on_timeout!r}"
        )
    return Timeouts(values["create"], values["update"], on_timeout)
