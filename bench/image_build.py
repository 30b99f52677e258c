"""Building the serving image without Docker, and starting it as a container.

    make bench      # or: .venv/bin/python bench/image_build.py [--no-cold]

On a local registry (Debian's docker-registry on loopback) and the Debian base the tests use
(devstack/debian_base.py), it measures:

* cold: a build with an empty layer cache (pip resolves, installs, compiles .pyc and compresses
  every layer), per layer bytes and seconds; skipped with --no-cold;
* warm: the same build with the layers cached, into a fresh registry (every byte uploaded);
* repeat: the same build again into that registry (target: 0 bytes uploaded);
* code change: one source file of a copy of this repository changed (target: only the app
  layer, the config and the manifest uploaded);
* start: the image pulled and unpacked (the rootfs cache emptied first), then run as SageMaker
  runs it with the trained tiny model mounted at /opt/ml/model, until /ping answers 200.

The last line printed is one JSON object with every figure. Timings depend on the machine and its
load; the README and docs/image.md give a run's figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# The registry helper the tests use, devstack/ and the package (before `make setup`).
sys.path[:0] = [str(REPO / "operator"), str(REPO / "tests"), str(REPO)]

from devstack.containers import ContainerRuntime, extract_model_archive, run_sagemaker_container  # noqa: E402
from devstack.debian_base import push_debian_python_base  # noqa: E402
from devstack.processes import free_port  # noqa: E402
from devstack.registry import start_registry, stop_registry  # noqa: E402
from qa_operator.imagebuild.build import build_image  # noqa: E402
from qa_operator.imagebuild.results import BuildResult  # noqa: E402
from qa_operator.model.config import InferenceConfig  # noqa: E402
from qa_operator.model.packaging import build_package, write_archive  # noqa: E402
from qa_operator.model.trained import trained_qa_model_dir  # noqa: E402
from qa_operator.registry.client import RegistryClient  # noqa: E402

REPOSITORY = "qa/serving"


@contextmanager
def local_registry(work: Path) -> Iterator[RegistryClient]:
    registry = start_registry(work)
    client = RegistryClient(registry.url)
    try:
        yield client
    finally:
        client.close()
        stop_registry(registry)


def summary(result: BuildResult) -> dict[str, Any]:
    return {
        "seconds": round(result.seconds, 2),
        "bytes_uploaded": result.bytes_uploaded,
        "layers": {
            layer.name: {
                "size": layer.size,
                "bytes_uploaded": layer.bytes_uploaded,
                "origin": layer.origin,
                "seconds": round(layer.seconds, 2),
            }
            for layer in result.layers
        },
    }


def build(client: RegistryClient, base: str, project: Path, cache: Path | None) -> BuildResult:
    return build_image(
        client,
        recipe="serving",
        base=base,
        repository=REPOSITORY,
        tag="bench",
        project_dir=project,
        cache_dir=cache,
    )


def start_to_ping(client: RegistryClient, image_uri: str, work: Path) -> dict[str, float]:
    runtime = ContainerRuntime(work / "rootfs")
    began = time.monotonic()
    image = runtime.pull(image_uri, client=client)
    unpacked = time.monotonic() - began
    package = build_package(trained_qa_model_dir(), work / "package", InferenceConfig())
    write_archive(package, work / "model.tar.gz")
    model_dir = extract_model_archive(work / "model.tar.gz", work / "opt-ml-model")
    port = free_port()
    began = time.monotonic()
    with run_sagemaker_container(
        runtime, image, model_dir=model_dir, port=port, log_path=work / "serving.log"
    ) as container:
        container.wait_http(f"http://127.0.0.1:{port}/ping", timeout=300)
        to_ping = time.monotonic() - began
    return {"pull_and_unpack_s": round(unpacked, 2), "start_to_ping_s": round(to_ping, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-cold", action="store_true", help="skip the empty-cache build")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="qa-bench-image-") as tmp:
        work = Path(tmp)
        if not args.no_cold:
            with local_registry(work / "registry-cold") as client:
                base = push_debian_python_base(client, "devstack/debian-python").reference
                print("cold build (empty layer cache) ...", flush=True)
                report["cold"] = summary(build(client, base, REPO, work / "empty-cache"))
            shutil.rmtree(work / "empty-cache", ignore_errors=True)
        with local_registry(work / "registry") as client:
            base = push_debian_python_base(client, "devstack/debian-python").reference
            print("warm build (layers cached, empty registry) ...", flush=True)
            warm = build(client, base, REPO, None)
            report["warm"] = summary(warm)
            print("repeat build ...", flush=True)
            report["repeat"] = summary(build(client, base, REPO, None))
            project = work / "project"
            shutil.copytree(
                REPO,
                project,
                ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info"),
            )
            changed = project / "operator" / "qa_operator" / "model" / "serving.py"
            changed.write_text(changed.read_text() + "\n# a code-only change\n")
            print("build after a code-only change ...", flush=True)
            report["code_change"] = summary(build(client, base, project, None))
            print("pull, unpack and start to /ping ...", flush=True)
            report["container"] = start_to_ping(client, warm.uri, work)
    for name in ("cold", "warm", "repeat", "code_change"):
        if name in report:
            print(
                f"{name:>12}: {report[name]['seconds']:8.1f} s, "
                f"{report[name]['bytes_uploaded']:>14,} B uploaded"
            )
    print(f"   container: {report['container']}")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
