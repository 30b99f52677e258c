"""End-to-end fixtures: the operator as users run it (`qa-operator run`), as a subprocess, with only
the permissions manifests/10-rbac.yaml grants, against the real API server, moto, the registry."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pluggy
import pytest
import requests

from devstack.processes import free_port, stop
from support.e2e import (
    PACKAGE_BUCKET,
    REPO,
    ROLE_ARN,
    SERVING_IMAGE,
    SOURCE_BUCKET,
    Operator,
    provision_execution,
)


@pytest.fixture(scope="session")
def operator_kubeconfig(kube_cluster: Any) -> Path:
    """A ServiceAccount identity with exactly the RBAC that manifests/ grant."""
    kube_cluster.kubectl(
        "apply",
        "-f",
        str(REPO / "manifests/00-namespace.yaml"),
        "-f",
        str(REPO / "manifests/10-rbac.yaml"),
    )
    return kube_cluster.service_account_kubeconfig("qa-operator", "qa-operator")


@pytest.fixture(scope="session")
def package_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the tests' operators, as a pod's volume is shared by its restarts."""
    return tmp_path_factory.mktemp("operator-work")


@pytest.fixture
def s3_model_uri(aws: Any, tiny_qa_model_dir: Path) -> str:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=SOURCE_BUCKET)
    for path in sorted(tiny_qa_model_dir.rglob("*")):
        if path.is_file():
            key = f"tiny/{path.relative_to(tiny_qa_model_dir).as_posix()}"
            s3.upload_file(str(path), SOURCE_BUCKET, key)
    return f"s3://{SOURCE_BUCKET}/tiny/"


@pytest.fixture
def operator(
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator_kubeconfig: Path,
    package_cache: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Operator]:
    aws.client("s3").create_bucket(Bucket=PACKAGE_BUCKET)
    # Preflight is on by default: the execution role and the serving image exist, as in an
    # account set up for the operator (tests/e2e/test_preflight.py takes them away).
    provision_execution(aws)
    # The admin policy allows exactly what the tests use beyond the defaults: sources in
    # SOURCE_BUCKET, the loopback `mlflow server`. Tests may rewrite it (operator.env names it).
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(
        f"s3Sources: ['s3://{SOURCE_BUCKET}/']\nmlflow: {{hosts: ['127.0.0.1']}}\n"
    )
    env = {
        **aws.env(),
        "PYTHONUNBUFFERED": "1",
        "HF_HUB_OFFLINE": "1",
        "QA_OPERATOR_BUCKET": PACKAGE_BUCKET,
        "QA_OPERATOR_EXECUTION_ROLE_ARN": ROLE_ARN,
        "QA_OPERATOR_SERVING_IMAGE": SERVING_IMAGE,
        "QA_OPERATOR_POLL_MIN_SECONDS": "0.5",
        "QA_OPERATOR_POLL_MAX_SECONDS": "2",
        "QA_OPERATOR_RESYNC_SECONDS": "2",
        "QA_OPERATOR_WORK_DIR": str(package_cache),
        # SERVING_IMAGE is a made-up digest no container can run; the tests that run the real
        # serving image on SageMaker's runtime turn the smoke test on (test_smoke_gate.py).
        "QA_OPERATOR_SMOKE_TEST": "off",
        "QA_OPERATOR_POLICY_FILE": str(policy_file),
    }
    handle = Operator(operator_kubeconfig, namespace, env, tmp_path)
    yield handle
    handle.stop_all()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for process in handle.processes:
            print(f"--- {process.log_path}\n{process.log()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` with a SQLite store and proxied artifacts, on a free loopback port."""
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(work / "mlflow.log", "wb")  # noqa: SIM115 - open for the server's lifetime
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--artifacts-destination",
            str(work / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start; log: {work / 'mlflow.log'}")
            time.sleep(0.5)
        yield url
    finally:
        stop(process, timeout=15)
        log.close()
