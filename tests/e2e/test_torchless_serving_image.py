"""The serving image without torch (recipe serving-onnxruntime), built with the project's
builder onto the Debian base, run under bubblewrap as SageMaker runs it, serves an onnxruntime
package of the trained tiny model: the post's three questions answered through /invocations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.containers import (
    ContainerRuntime,
    UnpackedImage,
    extract_model_archive,
    run_sagemaker_container,
)
from devstack.debian_base import DebianBase
from devstack.images import build_project_image
from devstack.processes import free_port
from qa_operator.imagebuild.results import BuildResult
from qa_operator.model.config import InferenceConfig, Quantize
from qa_operator.model.packaging import build_package, write_archive
from qa_operator.model.trained import HELD_OUT, POST_TEXT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TORCHLESS_REPOSITORY = "qa/serving-onnxruntime"


@pytest.fixture(scope="module")
def torchless_image(oci_registry: Any, debian_python_base: DebianBase) -> BuildResult:
    return build_project_image(
        oci_registry.url,
        "serving-onnxruntime",
        TORCHLESS_REPOSITORY,
        base=debian_python_base.reference,
        tag="test",
    )


@pytest.fixture(scope="module")
def unpacked_torchless_image(
    torchless_image: BuildResult, container_runtime: ContainerRuntime
) -> UnpackedImage:
    return container_runtime.pull(torchless_image.uri)


def test_the_torchless_image_has_no_torch_layer_and_no_torch(
    torchless_image: BuildResult, unpacked_torchless_image: UnpackedImage
) -> None:
    assert [layer.name for layer in torchless_image.layers if layer.origin != "base"] == [
        "dependencies",
        "app",
    ]
    site_packages = unpacked_torchless_image.rootfs / "opt/venv/lib/python3.11/site-packages"
    assert (site_packages / "onnxruntime").is_dir()
    assert (site_packages / "qa_operator").is_dir()
    assert not (site_packages / "torch").exists()


@pytest.mark.parametrize("quantize", ["none", "dynamic-int8"])
def test_the_torchless_image_answers_the_post_from_an_onnxruntime_package(
    quantize: Quantize,
    unpacked_torchless_image: UnpackedImage,
    container_runtime: ContainerRuntime,
    trained_qa_model_dir: Path,
    tmp_path: Path,
) -> None:
    config = InferenceConfig(engine="onnxruntime", quantize=quantize)
    package = build_package(trained_qa_model_dir, tmp_path / "package", config)
    write_archive(package, tmp_path / "model.tar.gz")
    model_dir = extract_model_archive(tmp_path / "model.tar.gz", tmp_path / "opt-ml-model")
    port = free_port()
    rows = [{"question": question, "text": POST_TEXT} for question, _ in HELD_OUT]

    with run_sagemaker_container(
        container_runtime,
        unpacked_torchless_image,
        model_dir=model_dir,
        port=port,
        log_path=tmp_path / "serving.log",
    ) as container:
        container.wait_http(f"http://127.0.0.1:{port}/ping", timeout=180)
        response = requests.post(f"http://127.0.0.1:{port}/invocations", json=rows, timeout=60)

    assert response.status_code == 200, response.text
    answers = [prediction["answer"] for prediction in response.json()["predictions"]]
    assert answers == [answer for _, answer in HELD_OUT]
    log = container.log_text()
    assert "QA model runs on ONNX Runtime" in log
    assert "Traceback" not in log
