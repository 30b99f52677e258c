"""A package as ModelPackager lays it out, without packaging anything: for tests of the
packager's cache and jobs, which care where a package lies, not what it holds."""

from __future__ import annotations

import json
from pathlib import Path

from qa_operator.artifacts import PreparedPackage
from qa_operator.spec import DeploymentSpec, parse_spec


def write_stub_package(staging: Path, mlmodel: bytes = b"stub") -> PreparedPackage:
    package = staging / "package"
    package.mkdir()
    (package / "MLmodel").write_bytes(mlmodel)
    (staging / "model.tar.gz").write_bytes(b"")
    record = {"digest": "sha256:0", "archiveDigest": "sha256:1", "packageDir": "package"}
    (staging / "package.json").write_text(json.dumps(record))
    return PreparedPackage("sha256:0", package, staging / "model.tar.gz", "sha256:1")


def s3_spec(name: str) -> DeploymentSpec:
    """A spec whose source key is its own: one S3 prefix per name."""
    return parse_spec(
        {
            "model": {"s3": {"uri": f"s3://bucket/{name}/"}},
            "endpoint": {"instanceType": "ml.m5.large"},
        }
    )
