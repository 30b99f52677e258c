"""The images the project builds (qa_operator.imagebuild), run as containers (devstack).

The serving image is built onto a Debian base made from .deb files, pushed to the local
registry, pulled back by digest and run under bubblewrap as SageMaker runs it: `serve`, port
from SAGEMAKER_BIND_TO_PORT, the model at /opt/ml/model (extracted from model.tar.gz, or baked
into the image), as uid 10001 on a read-only root. The model is the tiny one trained on this
machine; the post's three questions were held out of its training. The operator image runs
`qa-operator run` against the test API server and takes a resource to Ready on moto.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.containers import (
    Container,
    ContainerRuntime,
    Mount,
    UnpackedImage,
    extract_model_archive,
    run_sagemaker_container,
)
from devstack.debian_base import DebianBase
from devstack.images import OPERATOR_REPOSITORY, SERVING_REPOSITORY
from devstack.processes import free_port
from qa_operator.imagebuild.build import build_image
from qa_operator.imagebuild.results import BuildResult
from qa_operator.model.packaging import ModelPackage, write_archive
from qa_operator.model.trained import HELD_OUT, POST_TEXT
from qa_operator.registry.client import DOCKER_MANIFEST, RegistryClient
from qa_operator.registry.images import publish_image
from support.e2e import (
    PACKAGE_BUCKET,
    REPO,
    ROLE_ARN,
    SERVING_IMAGE,
    apply,
    deployment,
    get,
    is_ready,
    provision_execution,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PING_TIMEOUT_S = 180


def _build(registry: Any, base: DebianBase, recipe: str, repository: str) -> BuildResult:
    client = RegistryClient(registry.url)
    try:
        return build_image(
            client,
            recipe=recipe,
            base=base.reference,
            repository=repository,
            tag="test",
            project_dir=REPO,
        )
    finally:
        client.close()


@pytest.fixture(scope="module")
def unpacked_serving_image(
    serving_image: BuildResult, container_runtime: ContainerRuntime
) -> UnpackedImage:
    return container_runtime.pull(serving_image.uri)


def _ask_the_post(container: Container, port: int) -> list[str]:
    container.wait_http(f"http://127.0.0.1:{port}/ping", timeout=PING_TIMEOUT_S)
    rows = [{"question": question, "text": POST_TEXT} for question, _ in HELD_OUT]
    response = requests.post(f"http://127.0.0.1:{port}/invocations", json=rows, timeout=60)
    assert response.status_code == 200, response.text
    return [prediction["answer"] for prediction in response.json()["predictions"]]


def _expected() -> list[str]:
    return [answer for _, answer in HELD_OUT]


def _uid_of(container: Container) -> int:
    """The uid the container's main process has inside its user namespace: the host sees the
    uid it maps to (bubblewrap maps the image's user onto whoever started it)."""
    (pid,) = container.main_pids()
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE)
    assert match is not None
    host_uid = int(match.group(1))
    for line in Path(f"/proc/{pid}/uid_map").read_text().splitlines():
        inside, outside, count = (int(field) for field in line.split())
        if outside <= host_uid < outside + count:
            return inside + host_uid - outside
    raise AssertionError(f"uid {host_uid} of pid {pid} is not mapped into its namespace")


def test_serving_image_is_docker_v2_and_carries_sagemakers_contract(
    oci_registry: Any, serving_image: BuildResult
) -> None:
    client = RegistryClient(oci_registry.url)
    manifest = client.get_manifest(SERVING_REPOSITORY, serving_image.digest)
    assert manifest.media_type == DOCKER_MANIFEST
    config = json.loads(client.get_blob(SERVING_REPOSITORY, serving_image.config_digest))
    runtime = config["config"]
    assert runtime["Entrypoint"] == ["python", "-m", "qa_operator.model.serving"]
    assert runtime["Cmd"] == ["serve"]
    assert runtime["User"] == "10001"
    assert "8080/tcp" in runtime["ExposedPorts"]
    assert [layer.name for layer in serving_image.layers][-3:] == ["torch", "dependencies", "app"]


def test_a_second_build_uploads_nothing_and_gives_the_same_digest(
    oci_registry: Any, debian_python_base: DebianBase, serving_image: BuildResult
) -> None:
    again = _build(oci_registry, debian_python_base, "serving", SERVING_REPOSITORY)

    assert again.digest == serving_image.digest
    assert again.bytes_uploaded == 0
    assert {layer.origin for layer in again.layers if not layer.name.startswith("base")} == {
        "cache"
    }


def test_s3_mode_container_answers_the_posts_questions(
    unpacked_serving_image: UnpackedImage,
    container_runtime: ContainerRuntime,
    trained_qa_package: ModelPackage,
    tmp_path: Path,
) -> None:
    archive = tmp_path / "model.tar.gz"
    write_archive(trained_qa_package, archive)
    model_dir = extract_model_archive(archive, tmp_path / "opt-ml-model")
    port = free_port()

    with run_sagemaker_container(
        container_runtime,
        unpacked_serving_image,
        model_dir=model_dir,
        port=port,
        log_path=tmp_path / "serving.log",
    ) as container:
        answers = _ask_the_post(container, port)
        uid = _uid_of(container)

    assert [answer.lower() for answer in answers] == [a.lower() for a in _expected()]
    assert uid == 10001
    assert "Traceback" not in container.log_text()


def test_baked_image_answers_with_no_model_mounted(
    oci_registry: Any,
    serving_image: BuildResult,
    container_runtime: ContainerRuntime,
    trained_qa_package: ModelPackage,
    tmp_path: Path,
) -> None:
    client = RegistryClient(oci_registry.url)
    baked = publish_image(
        client,
        base=serving_image.uri,
        target_repository="qa/baked",
        mode="baked",
        package_dir=trained_qa_package.path,
        package_digest=trained_qa_package.digest,
    )
    assert client.get_manifest("qa/baked", baked.digest).media_type == DOCKER_MANIFEST
    image = container_runtime.pull(baked.uri)
    port = free_port()

    with run_sagemaker_container(
        container_runtime, image, model_dir=None, port=port, log_path=tmp_path / "baked.log"
    ) as container:
        answers = _ask_the_post(container, port)

    assert [answer.lower() for answer in answers] == [a.lower() for a in _expected()]


def test_serving_image_runs_as_10001_on_a_read_only_root(
    unpacked_serving_image: UnpackedImage, container_runtime: ContainerRuntime, tmp_path: Path
) -> None:
    probe = (
        "import os, qa_operator.model.serving as s\n"
        "print('uid', os.getuid())\n"
        "print('module', s.__file__)\n"
        "try:\n"
        "    open('/opt/venv/written', 'w')\n"
        "except OSError as error:\n"
        "    print('write', error.strerror)\n"
    )
    container = container_runtime.run(
        unpacked_serving_image,
        entrypoint=["python", "-c", probe],
        command=[],
        log_path=tmp_path / "probe.log",
    )
    assert container.wait() == 0, container.log_text()
    output = container.log_text()
    assert "uid 10001" in output
    assert "module /opt/venv/lib/python3.11/site-packages/qa_operator/model/serving.py" in output
    assert "write Read-only file system" in output


def test_operator_image_takes_a_resource_to_ready(
    oci_registry: Any,
    debian_python_base: DebianBase,
    container_runtime: ContainerRuntime,
    kube_cluster: Any,
    aws: Any,
    namespace: str,
    operator_kubeconfig: Path,
    s3_model_uri: str,
    tmp_path: Path,
) -> None:
    built = _build(oci_registry, debian_python_base, "operator", OPERATOR_REPOSITORY)
    image = container_runtime.pull(built.uri)
    aws.client("s3").create_bucket(Bucket=PACKAGE_BUCKET)
    provision_execution(aws)  # the role and SERVING_IMAGE that preflight (on by default) checks
    work = tmp_path / "work"
    work.mkdir()
    work.chmod(0o777)
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "policy.yaml").write_text(f"s3Sources: ['{s3_model_uri}']\n")
    health_port = free_port()
    env = {
        **aws.env(),
        "KUBECONFIG": "/etc/qa-operator/kubeconfig",
        "HOME": "/tmp",  # as manifests/30-deployment.yaml: the root filesystem is read-only
        "QA_OPERATOR_BUCKET": PACKAGE_BUCKET,
        "QA_OPERATOR_EXECUTION_ROLE_ARN": ROLE_ARN,
        "QA_OPERATOR_SERVING_IMAGE": SERVING_IMAGE,
        "QA_OPERATOR_POLL_MIN_SECONDS": "0.5",
        "QA_OPERATOR_POLL_MAX_SECONDS": "2",
        "QA_OPERATOR_RESYNC_SECONDS": "2",
        "QA_OPERATOR_POLICY_FILE": "/etc/qa-operator/policy/policy.yaml",
        # SERVING_IMAGE exists in ECR but runs nowhere: no endpoint to ask a smoke question.
        "QA_OPERATOR_SMOKE_TEST": "off",
    }
    command = ["run", "--standalone", "--namespace", namespace]
    command.append(f"--liveness=http://127.0.0.1:{health_port}/healthz")
    with container_runtime.run(
        image,
        command=command,
        env=env,
        mounts=[
            Mount(operator_kubeconfig, "/etc/qa-operator/kubeconfig"),
            Mount(work, "/var/cache/qa-operator", read_only=False),
            Mount(policy, "/etc/qa-operator/policy"),
        ],
        log_path=tmp_path / "operator.log",
    ) as container:
        container.wait_http(f"http://127.0.0.1:{health_port}/healthz", timeout=120)
        apply(kube_cluster, namespace, deployment("in-a-container", s3_model_uri))

        seen: dict[str, Any] = {}

        def ready() -> bool:
            seen.update(get(kube_cluster, namespace, "in-a-container") or {})
            return is_ready(seen)

        try:
            wait_for("Ready", ready, timeout=180)
        except pytest.fail.Exception:
            print(json.dumps(seen.get("status"), indent=1), container.log_tail(80), sep="\n")
            raise
        assert _uid_of(container) == 10001
