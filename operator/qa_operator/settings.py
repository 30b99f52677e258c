"""Operator settings, read once from the environment (a ConfigMap or Helm values set them)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PREFIX = "QA_OPERATOR_"


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class OperatorSettings:
    default_region: str
    bucket: str | None = None
    bucket_prefix: str = "qa-operator"
    execution_role_arn: str | None = None
    serving_image: str | None = None
    image_repository: str | None = None
    registry_endpoint: str | None = None
    poll_min_seconds: float = 5.0
    poll_max_seconds: float = 60.0
    resync_seconds: float = 60.0
    max_concurrent_packaging: int = 2
    work_dir: Path = Path("/var/cache/qa-operator")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorSettings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(PREFIX + name, "").strip()
            return value or None

        def number(name: str, default: float) -> float:
            raw = text(name)
            if raw is None:
                return default
            try:
                value = float(raw)
            except ValueError as exc:
                raise SettingsError(f"{PREFIX}{name}={raw!r} is not a number") from exc
            if not math.isfinite(value) or value <= 0:
                raise SettingsError(f"{PREFIX}{name} must be a positive number, not {raw!r}")
            return value

        def count(name: str, default: int) -> int:
            value = number(name, default)
            if value != int(value):
                raise SettingsError(f"{PREFIX}{name} must be a whole number")
            return int(value)

        region = text("DEFAULT_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
        settings = cls(
            default_region=region or "us-east-1",
            bucket=text("BUCKET"),
            bucket_prefix=(text("BUCKET_PREFIX") or "qa-operator").strip("/"),
            execution_role_arn=text("EXECUTION_ROLE_ARN"),
            serving_image=text("SERVING_IMAGE"),
            image_repository=text("IMAGE_REPOSITORY"),
            registry_endpoint=text("REGISTRY_ENDPOINT"),
            poll_min_seconds=number("POLL_MIN_SECONDS", 5.0),
            poll_max_seconds=number("POLL_MAX_SECONDS", 60.0),
            resync_seconds=number("RESYNC_SECONDS", 60.0),
            max_concurrent_packaging=count("MAX_CONCURRENT_PACKAGING", 2),
            work_dir=Path(text("WORK_DIR") or "/var/cache/qa-operator"),
        )
        if settings.poll_min_seconds > settings.poll_max_seconds:
            raise SettingsError("QA_OPERATOR_POLL_MIN_SECONDS exceeds QA_OPERATOR_POLL_MAX_SECONDS")
        return settings
