"""Benchmark: publishing the serving image with a baked model, straight through the registry API.

Starts two local registries (Debian's docker-registry): a "source" holding a synthetic base
image and a "target" standing for ECR. Measures bytes uploaded and wall time for:

  first   - base copied across registries + model layer + config + manifest
  repeat  - the same package again (target: 0 bytes, under 1 s); also without a package
            digest, which rebuilds the layer locally to learn its digest (0 bytes, slower)
  changed - one weights file changed (target: only the new model layer, config and manifest)

    .venv/bin/python bench/image_push.py [--base-mb 64] [--model-mb 64]

The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, TypedDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the registry and image helpers the tests use
sys.path.insert(1, str(ROOT / "operator"))  # works before `make setup` installs the package
sys.path.insert(2, str(ROOT))  # devstack

from devstack.registry import start_registry, stop_registry  # noqa: E402
from qa_operator.registry.client import RegistryClient  # noqa: E402
from qa_operator.registry.images import publish_image  # noqa: E402
from support.images import Images  # noqa: E402


def push_base(client: RegistryClient, repository: str, tag: str, size_mb: int) -> None:
    """A two-layer base image of `size_mb` incompressible bytes, with a serving runtime config."""
    half = size_mb * 1024 * 1024 // 2
    layers = [
        {"usr/lib/python/site.bin": os.urandom(half)},
        {"opt/venv/lib/torch.bin": os.urandom(half)},
    ]
    Images().push_base(client, repository, tag, layers_files=layers)


def make_package(root: Path, model_mb: int) -> None:
    (root / "artifacts").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (root / "requirements.txt").write_text("transformers==5.24.0\n")
    (root / "artifacts" / "model.safetensors").write_bytes(os.urandom(model_mb * 1024 * 1024))


def directory_digest(root: Path) -> str:
    """Content digest of a package directory, as the packager reports one."""
    try:
        from qa_operator.model.packaging import package_digest

        return package_digest(root)
    except ImportError:  # the packager's dependencies are missing: a local equivalent
        import hashlib

        outer = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            outer.update(path.relative_to(root).as_posix().encode() + b"\0")
            outer.update(hashlib.sha256(path.read_bytes()).digest())
        return "sha256:" + outer.hexdigest()


class PublishArgs(TypedDict):
    """The `publish_image` arguments every measured push shares."""

    base: str
    target_repository: str
    mode: Literal["s3", "baked"]
    package_dir: Path
    source: RegistryClient


def measure(client: RegistryClient, **kwargs: Any) -> dict[str, Any]:
    before = client.bytes_uploaded
    started = time.perf_counter()
    ref = publish_image(client, **kwargs)
    seconds = time.perf_counter() - started
    return {
        "bytes": client.bytes_uploaded - before,
        "seconds": round(seconds, 3),
        "digest": ref.digest,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-mb", type=int, default=64)
    parser.add_argument("--model-mb", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        work = Path(tmp)
        source_registry = start_registry(work / "source")
        target_registry = start_registry(work / "target")
        try:
            source = RegistryClient(source_registry.url)
            target = RegistryClient(target_registry.url)
            push_base(source, "serving/base", "1.0", args.base_mb)
            package = work / "package"
            make_package(package, args.model_mb)
            common: PublishArgs = {
                "base": f"{source.host}/serving/base:1.0",
                "target_repository": "qa/serving",
                "mode": "baked",
                "package_dir": package,
                "source": source,
            }

            first = measure(target, **common, package_digest=directory_digest(package))
            repeat = measure(target, **common, package_digest=directory_digest(package))
            # Without a package digest the layer must be built (and hashed) to know its tag.
            publish_image(target, **common)
            repeat_no_digest = measure(target, **common)
            weights = package / "artifacts" / "model.safetensors"
            weights.write_bytes(os.urandom(args.model_mb * 1024 * 1024))
            changed = measure(target, **common, package_digest=directory_digest(package))
            changed_manifest = target.get_manifest("qa/serving", changed["digest"]).json()
            model_layer = changed_manifest["layers"][-1]["size"]
            expected_changed = (
                model_layer
                + changed_manifest["config"]["size"]
                + len(target.get_manifest("qa/serving", changed["digest"]).body)
            )
        finally:
            stop_registry(source_registry)
            stop_registry(target_registry)

    result = {
        "base_mb": args.base_mb,
        "model_mb": args.model_mb,
        "first_push": first,
        "repeat_push": repeat,
        "repeat_push_without_package_digest": repeat_no_digest,
        "push_after_model_change": changed,
        "model_layer_bytes": model_layer,
        "changed_push_only_model": changed["bytes"] == expected_changed,
        "repeat_zero_bytes": repeat["bytes"] == 0 and repeat_no_digest["bytes"] == 0,
        "repeat_under_1s": repeat["seconds"] < 1.0,
    }
    for key in ("first_push", "repeat_push", "repeat_push_without_package_digest"):
        print(f"{key:38} {result[key]['bytes']:>12} B  {result[key]['seconds']:>7.3f} s")
    print(f"{'push_after_model_change':38} {changed['bytes']:>12} B  {changed['seconds']:>7.3f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
