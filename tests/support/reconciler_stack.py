"""The Reconciler's test stack without Kubernetes: moto's server, the tiny model as an S3 source,
and settings that poll at once. For the reconciler's tests and the change handler's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qa_operator.settings import OperatorSettings
from support.e2e import PACKAGE_BUCKET, ROLE_ARN, SERVING_IMAGE

TINY_SOURCE = "s3://sources/tiny/"


def reconciler_stack(
    aws: Any, model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[OperatorSettings, dict[str, Any]]:
    """Settings for a Reconciler against `aws`, and a spec whose source is `model_dir` in S3."""
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=PACKAGE_BUCKET)
    s3.create_bucket(Bucket="sources")
    for path in model_dir.iterdir():
        s3.upload_file(str(path), "sources", f"tiny/{path.name}")
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("s3Sources: ['s3://sources/']\n")
    settings = OperatorSettings(
        default_region="us-east-1",
        policy_file=policy_file,
        bucket=PACKAGE_BUCKET,
        execution_role_arn=ROLE_ARN,
        serving_image=SERVING_IMAGE,
        work_dir=tmp_path / "work",
        poll_min_seconds=0.01,
        poll_max_seconds=0.01,
        # Each test builds its own Reconciler: its packaging child should not outlive it long.
        packaging_idle_seconds=1.0,
        # SERVING_IMAGE is a made-up digest no container can run: the smoke test is covered with
        # the real serving image in tests/e2e/test_smoke_gate.py.
        smoke_test_default=False,
        # No execution role or pushed image here: preflight has its own end-to-end tests
        # (tests/e2e/test_preflight.py), with the fixtures that provision both.
        preflight=False,
    )
    spec = {
        "model": {
            "s3": {"uri": TINY_SOURCE},
            "inference": {"maxSeqLength": 128, "docStride": 32},
        },
        "endpoint": {"instanceType": "ml.m5.large"},
    }
    return settings, spec
