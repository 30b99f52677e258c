"""Helpers for the end-to-end tests: the operator process, resources, and waiting on them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.processes import stop

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "serving.qaoperator.io", "v1alpha1", "qamodeldeployments"
ROLE_ARN = "arn:aws:iam::123456789012:role/SageMakerExecution"
SAGEMAKER_TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)
# A serving image that exists in the stack's ECR (provision_execution) but that no container can
# run: its digest is its manifest's, as ECR computes it. Tests that run a real serving image push
# one to the registry (test_smoke_gate.py).
SERVING_REPOSITORY = "qa-serving"
SERVING_MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 2,
            "digest": "sha256:" + "ab" * 32,
        },
        "layers": [],
    }
)
SERVING_DIGEST = "sha256:" + hashlib.sha256(SERVING_MANIFEST.encode()).hexdigest()
SERVING_IMAGE = (
    f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{SERVING_REPOSITORY}@{SERVING_DIGEST}"
)
PACKAGE_BUCKET = "qa-packages"
SOURCE_BUCKET = "qa-sources"


@dataclass
class OperatorProcess:
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        stop(self.process, timeout=20, sig=signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL: no chance to write status or clean up, as when a node dies."""
        self.process.kill()
        self.process.wait()

    def log(self, lines: int = 60) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Operator:
    """Starts `qa-operator run` for one namespace; stops every process at teardown."""

    kubeconfig: Path
    namespace: str
    env: dict[str, str]
    log_dir: Path
    processes: list[OperatorProcess] = field(default_factory=list)

    def start(self, *, also_watch: Sequence[str] = (), **extra_env: str) -> OperatorProcess:
        """`also_watch`: more namespaces the process watches beside the test's own."""
        watched = [arg for name in (self.namespace, *also_watch) for arg in ("--namespace", name)]
        log_path = self.log_dir / f"operator-{len(self.processes)}.log"
        env = {**os.environ, **self.env, **extra_env, "KUBECONFIG": str(self.kubeconfig)}
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "qa_operator.cli",
                    "run",
                    "--standalone",
                    *watched,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=REPO,
            )
        started = OperatorProcess(process, log_path)
        self.processes.append(started)
        return started

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()


def create_execution_role(aws: Any, role_arn: str) -> None:
    """An execution role trusting SageMaker, as preflight wants it."""
    aws.client("iam").create_role(
        RoleName=role_arn.rsplit("/", 1)[-1], AssumeRolePolicyDocument=SAGEMAKER_TRUST
    )


def provision_execution(aws: Any) -> None:
    """What a SageMaker account set up for the operator has, so that preflight passes: the
    execution role ROLE_ARN, trusting SageMaker, and SERVING_IMAGE in ECR (by its digest)."""
    create_execution_role(aws, ROLE_ARN)
    ecr = aws.client("ecr")
    ecr.create_repository(repositoryName=SERVING_REPOSITORY)
    ecr.put_image(
        repositoryName=SERVING_REPOSITORY,
        imageManifest=SERVING_MANIFEST,
        imageDigest=SERVING_DIGEST,
    )


def deployment(name: str, model_uri: str, **spec_overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"s3": {"uri": model_uri}, "inference": {"maxSeqLength": 128, "docStride": 32}},
        "endpoint": {"instanceType": "ml.m5.large", "instanceCount": 1, "tags": {"team": "qa"}},
    }
    for key, value in spec_overrides.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "QAModelDeployment",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply(cluster: Any, namespace: str, body: dict[str, Any], check: bool = True) -> Any:
    return cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=check
    )


def assert_rejected_at_apply(
    cluster: Any, namespace: str, body: dict[str, Any], expected: str
) -> None:
    """The API server refuses `body` (the CRD's schema or rules), saying `expected`, and keeps
    nothing of it."""
    result = apply(cluster, namespace, body, check=False)
    assert result.returncode != 0, f"accepted: {body['spec']}"
    assert expected in result.stderr, result.stderr
    assert get(cluster, namespace, body["metadata"]["name"]) is None


def get(cluster: Any, namespace: str, name: str) -> dict[str, Any] | None:
    result = cluster.kubectl("get", PLURAL, name, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def wait_for(
    what: str,
    probe: Callable[[], Any],
    *,
    timeout: float = 120,
    operator: Operator | None = None,
) -> Any:
    """Poll until `probe` returns something truthy; fail with the operator's log otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        processes = operator.processes if operator else []
        for process in processes:
            if process.process.poll() is not None and process is processes[-1]:
                pytest.fail(f"operator exited ({process.process.returncode}):\n{process.log()}")
        time.sleep(0.3)
    logs = "\n".join(p.log() for p in operator.processes) if operator else ""
    pytest.fail(f"timed out waiting for {what}; last probe: {last!r}\n{logs}")


def endpoint_observations(aws: Any) -> int:
    """The operator's looks at its endpoints: DescribeEndpoint (a pass that acts or waits, or an
    entry that changed) and ListEndpoints (resyncs share one listing per region). To show that
    nothing happens, wait until this grew by N, then assert the counts of interest unchanged."""
    return aws.calls("sagemaker", "DescribeEndpoint") + aws.calls("sagemaker", "ListEndpoints")


def condition(obj: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for item in (obj or {}).get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return {}


def is_ready(obj: dict[str, Any] | None) -> bool:
    if not obj:
        return False
    status = obj.get("status", {})
    return (
        condition(obj, "Ready").get("status") == "True"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
    )


def owned(aws: Any, uid: str) -> dict[str, list[str]]:
    """Every SageMaker resource in moto tagged with this owner uid."""
    sm = aws.client("sagemaker")

    def mine(arn: str) -> bool:
        tags = {t["Key"]: t["Value"] for t in sm.list_tags(ResourceArn=arn)["Tags"]}
        return tags.get("qaoperator.io/uid") == uid

    return {
        "endpoints": [
            e["EndpointName"] for e in sm.list_endpoints()["Endpoints"] if mine(e["EndpointArn"])
        ],
        "configs": [
            c["EndpointConfigName"]
            for c in sm.list_endpoint_configs()["EndpointConfigs"]
            if mine(c["EndpointConfigArn"])
        ],
        "models": [m["ModelName"] for m in sm.list_models()["Models"] if mine(m["ModelArn"])],
    }


def package_objects(aws: Any) -> list[str]:
    listing = aws.client("s3").list_objects_v2(Bucket=PACKAGE_BUCKET)
    return [obj["Key"] for obj in listing.get("Contents", [])]


def events(cluster: Any, namespace: str, name: str) -> list[tuple[str, str]]:
    """(reason, message) of each Event about the named object, oldest first."""
    listed = cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
        "--sort-by", ".metadata.creationTimestamp", "-o", "json",
    ).stdout  # fmt: skip
    return [(e.get("reason", ""), e.get("message", "")) for e in json.loads(listed)["items"]]


def wait_degraded(
    cluster: Any, namespace: str, name: str, operator: Operator, *, timeout: float = 120
) -> dict[str, Any]:
    """Wait until the resource's Degraded condition is True; return it."""

    def probe() -> dict[str, Any] | None:
        obj = get(cluster, namespace, name)
        return obj if obj and condition(obj, "Degraded").get("status") == "True" else None

    found: dict[str, Any] = wait_for(f"{name} Degraded", probe, timeout=timeout, operator=operator)
    return found


def wait_ready(
    cluster: Any,
    namespace: str,
    name: str,
    operator: Operator,
    *,
    generation: int = 1,
    timeout: float = 120,
) -> dict[str, Any]:
    """Wait until the resource is Ready for (at least) this generation; return it."""

    seen: dict[str, Any] = {}

    def probe() -> dict[str, Any] | None:
        obj = get(cluster, namespace, name)
        seen["status"] = (obj or {}).get("status")
        if obj and is_ready(obj) and obj["metadata"]["generation"] >= generation:
            return obj
        return None

    try:
        found: dict[str, Any] = wait_for(f"{name} Ready", probe, timeout=timeout, operator=operator)
    except pytest.fail.Exception as timeout_error:
        pytest.fail(f"{timeout_error.msg}\nlast status: {seen.get('status')}")
    return found
