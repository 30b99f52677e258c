"""Operator settings, read once from the environment (a ConfigMap or Helm values set them)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from qa_operator.model.limits import MIN_JSON_DEPTH, ServingLimits

PREFIX = "QA_OPERATOR_"
GIB = 1024**3
DEFAULT_WORK_DIR_MAX_BYTES = 15 * GIB


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class OperatorSettings:
    default_region: str
    bucket: str | None = None
    bucket_prefix: str = "qa-operator"
    execution_role_arn: str | None = None
    serving_image: str | None = None
    # The serving image for packages of engine onnxruntime (no torch in it, far smaller); None:
    # they run on `serving_image`, which has onnxruntime too.
    serving_image_onnxruntime: str | None = None
    image_repository: str | None = None
    registry_endpoint: str | None = None
    poll_min_seconds: float = 5.0
    poll_max_seconds: float = 60.0
    resync_seconds: float = 60.0
    max_concurrent_packaging: int = 2
    # A packaging child process exits this long after its last job (packaging_process.py).
    packaging_idle_seconds: float = 60.0
    work_dir: Path = Path("/var/cache/qa-operator")
    work_dir_max_bytes: int = DEFAULT_WORK_DIR_MAX_BYTES
    serving_limits: ServingLimits = field(default_factory=ServingLimits)
    smoke_test_default: bool = True  # for resources that leave spec.smokeTest.enabled unset
    smoke_test_attempts: int = 3
    policy_file: Path | None = None  # the admin policy (policy.py); None: its safe defaults
    # The operator's own MLflow tracking server (MLFLOW_TRACKING_URI): always allowed by the policy.
    mlflow_tracking_uri: str | None = None
    metrics_port: int = 0  # the Prometheus endpoint (metrics.py); 0: not served
    # HA (leader.py): replicas elect one leader on a Lease; None namespace: the pod's own.
    leader_election: bool = False
    lease_name: str = "qa-operator"
    lease_namespace: str | None = None
    lease_seconds: float = 15.0
    # How long an endpoint may stay Creating / Updating (deadlines.py), unless its spec says.
    create_timeout_seconds: float = 3600.0
    update_timeout_seconds: float = 5400.0
    preflight: bool = True  # check role, image, package and quota before creating (preflight.py)

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
            serving_image_onnxruntime=text("SERVING_IMAGE_ONNXRUNTIME"),
            image_repository=text("IMAGE_REPOSITORY"),
            registry_endpoint=text("REGISTRY_ENDPOINT"),
            poll_min_seconds=number("POLL_MIN_SECONDS", 5.0),
            poll_max_seconds=number("POLL_MAX_SECONDS", 60.0),
            resync_seconds=number("RESYNC_SECONDS", 60.0),
            max_concurrent_packaging=count("MAX_CONCURRENT_PACKAGING", 2),
            packaging_idle_seconds=number("PACKAGING_IDLE_SECONDS", 60.0),
            work_dir=Path(text("WORK_DIR") or "/var/cache/qa-operator"),
            work_dir_max_bytes=int(
                number("WORK_DIR_MAX_GB", DEFAULT_WORK_DIR_MAX_BYTES / GIB) * GIB
            ),
            serving_limits=_serving_limits(count),
            smoke_test_default=_switch(text("SMOKE_TEST"), "SMOKE_TEST", default=True),
            smoke_test_attempts=count("SMOKE_TEST_ATTEMPTS", 3),
            policy_file=Path(policy) if (policy := text("POLICY_FILE")) else None,
            mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI", "").strip() or None,
            metrics_port=count("METRICS_PORT", 0),
            leader_election=_switch(text("LEADER_ELECTION"), "LEADER_ELECTION", default=False),
            lease_name=text("LEASE_NAME") or "qa-operator",
            lease_namespace=text("LEASE_NAMESPACE"),
            lease_seconds=number("LEASE_SECONDS", 15.0),
            create_timeout_seconds=number("CREATE_TIMEOUT_SECONDS", 3600.0),
            update_timeout_seconds=number("UPDATE_TIMEOUT_SECONDS", 5400.0),
            preflight=_switch(text("PREFLIGHT"), "PREFLIGHT", default=True),
        )
        if settings.metrics_port > 65535:
            raise SettingsError(f"{PREFIX}METRICS_PORT must be a TCP port (1-65535)")
        if settings.poll_min_seconds > settings.poll_max_seconds:
            raise SettingsError("QA_OPERATOR_POLL_MIN_SECONDS exceeds QA_OPERATOR_POLL_MAX_SECONDS")
        return settings


def _switch(raw: str | None, name: str, *, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.lower()
    if value not in ("on", "off", "true", "false"):
        raise SettingsError(f"{PREFIX}{name} must be on or off, not {raw!r}")
    return value in ("on", "true")


def serving_limit_name(field_name: str) -> str:
    """The environment variable of one ServingLimits field: max_rows -> ..._SERVING_MAX_ROWS."""
    return f"{PREFIX}SERVING_{field_name.upper()}"


def _serving_limits(count: Callable[[str, int], int]) -> ServingLimits:
    defaults = ServingLimits()
    values = {
        f.name: count(f"SERVING_{f.name.upper()}", getattr(defaults, f.name))
        for f in fields(ServingLimits)
    }
    if values["max_json_depth"] < MIN_JSON_DEPTH:
        raise SettingsError(
            f"{serving_limit_name('max_json_depth')} must be at least {MIN_JSON_DEPTH} "
            f"(MLflow's dataframe_split request is that deep), not {values['max_json_depth']}"
        )
    try:
        return ServingLimits(**values).validate()
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}SERVING_*: {exc}") from exc
