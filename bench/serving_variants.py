"""The serving image with torch against the one without (recipe serving-onnxruntime).

    make bench      # or: .venv/bin/python bench/serving_variants.py [--rounds 3]

Both images are built onto the Debian base the tests use (devstack/debian_base.py) with the
project's builder and its shared layer cache (a machine's first build installs and compresses
every layer; later ones find them), pushed to a local registry, and measured in the same run:

* size: the compressed image, the sum of its layer blobs as the registry stores them and as
  SageMaker pulls them (base layers included), and the layers of our own on top of the base;
* pull and unpack: the image pulled from the registry into an empty rootfs cache and unpacked;
* start to /ping: each image run as SageMaker runs it (`serve`, under bubblewrap) with the same
  onnxruntime package of the trained tiny model at /opt/ml/model, timed from the start until
  GET /ping answers 200; `--rounds` starts per image, interleaved, best and median reported.
  Each container is asked the original post's three questions, and the answers must agree.

The last line printed is one JSON object with every figure and the ratios (torch-less over torch
for sizes and times: below 1 means the torch-less image is smaller or faster). Timings depend on
the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO / "tests"), str(REPO)]

from devstack.containers import (  # noqa: E402
    ContainerRuntime,
    UnpackedImage,
    extract_model_archive,
    run_sagemaker_container,
)
from devstack.debian_base import push_debian_python_base  # noqa: E402
from devstack.processes import free_port  # noqa: E402
from devstack.registry import start_registry, stop_registry  # noqa: E402
from qa_operator.imagebuild.build import build_image  # noqa: E402
from qa_operator.imagebuild.results import BuildResult  # noqa: E402
from qa_operator.model.config import InferenceConfig  # noqa: E402
from qa_operator.model.packaging import build_package, write_archive  # noqa: E402
from qa_operator.model.trained import HELD_OUT, POST_TEXT, trained_qa_model_dir  # noqa: E402
from qa_operator.registry.client import RegistryClient  # noqa: E402

VARIANTS = {"torch": "serving", "torchless": "serving-onnxruntime"}


def sizes(result: BuildResult) -> dict[str, Any]:
    ours = [layer for layer in result.layers if layer.origin != "base"]
    return {
        "compressed_bytes": sum(layer.size for layer in result.layers),
        "own_layers_bytes": sum(layer.size for layer in ours),
        "layers": {layer.name: layer.size for layer in result.layers},
        "build_s": round(result.seconds, 2),
    }


def start_to_ping(
    runtime: ContainerRuntime, image: UnpackedImage, model_dir: Path, log: Path
) -> tuple[float, list[str]]:
    port = free_port()
    began = time.monotonic()
    with run_sagemaker_container(
        runtime, image, model_dir=model_dir, port=port, log_path=log
    ) as container:
        container.wait_http(f"http://127.0.0.1:{port}/ping", timeout=300)
        seconds = time.monotonic() - began
        rows = [{"question": question, "text": POST_TEXT} for question, _ in HELD_OUT]
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json=rows, timeout=60)
        answer.raise_for_status()
    return seconds, [row["answer"] for row in answer.json()["predictions"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="container starts per image")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qa-bench-variants-") as tmp:
        work = Path(tmp)
        registry = start_registry(work / "registry")
        client = RegistryClient(registry.url)
        try:
            base = push_debian_python_base(client, "devstack/debian-python").reference
            built: dict[str, BuildResult] = {}
            for variant, recipe in VARIANTS.items():
                print(f"building {recipe} ...", flush=True)
                built[variant] = build_image(
                    client,
                    recipe=recipe,
                    base=base,
                    repository=f"qa/{recipe}",
                    tag="bench",
                    project_dir=REPO,
                )
                report[variant] = sizes(built[variant])
            runtime = ContainerRuntime(work / "rootfs")
            images: dict[str, UnpackedImage] = {}
            for variant, result in built.items():
                began = time.monotonic()
                images[variant] = runtime.pull(result.uri, client=client)
                report[variant]["pull_and_unpack_s"] = round(time.monotonic() - began, 2)
            config = InferenceConfig(engine="onnxruntime")
            package = build_package(trained_qa_model_dir(), work / "package", config)
            write_archive(package, work / "model.tar.gz")
            model_dir = extract_model_archive(work / "model.tar.gz", work / "opt-ml-model")
            starts: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
            answers: dict[str, list[str]] = {}
            for round_number in range(args.rounds):
                for variant in VARIANTS:
                    log = work / f"{variant}-{round_number}.log"
                    seconds, answers[variant] = start_to_ping(
                        runtime, images[variant], model_dir, log
                    )
                    starts[variant].append(seconds)
                    print(f"{variant}: start to /ping {seconds:.2f} s", flush=True)
            for variant, times in starts.items():
                report[variant]["start_to_ping_s"] = {
                    "best": round(min(times), 2),
                    "median": round(statistics.median(times), 2),
                    "all": [round(t, 2) for t in times],
                }
                report[variant]["answers"] = answers[variant]
        finally:
            client.close()
            stop_registry(registry)
            shutil.rmtree(work / "rootfs", ignore_errors=True)
    torch, torchless = report["torch"], report["torchless"]
    report["torchless_over_torch"] = {
        "compressed_bytes": round(torchless["compressed_bytes"] / torch["compressed_bytes"], 3),
        "own_layers_bytes": round(torchless["own_layers_bytes"] / torch["own_layers_bytes"], 3),
        "pull_and_unpack_s": round(torchless["pull_and_unpack_s"] / torch["pull_and_unpack_s"], 3),
        "start_to_ping_best_s": round(
            torchless["start_to_ping_s"]["best"] / torch["start_to_ping_s"]["best"], 3
        ),
        "start_to_ping_median_s": round(
            torchless["start_to_ping_s"]["median"] / torch["start_to_ping_s"]["median"], 3
        ),
    }
    report["answers_agree"] = torch["answers"] == torchless["answers"]
    report["answers_expected"] = torchless["answers"] == [answer for _, answer in HELD_OUT]
    for variant in VARIANTS:
        figures = report[variant]
        print(
            f"{variant:>9}: {figures['compressed_bytes'] / 1e6:9.1f} MB compressed "
            f"({figures['own_layers_bytes'] / 1e6:.1f} MB over the base), "
            f"pull+unpack {figures['pull_and_unpack_s']:.1f} s, "
            f"start to /ping best {figures['start_to_ping_s']['best']:.2f} s "
            f"(median {figures['start_to_ping_s']['median']:.2f} s)"
        )
    print(f"torch-less / torch: {report['torchless_over_torch']}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
