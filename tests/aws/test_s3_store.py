"""The S3 package store against moto: uploads skip what is there, listing and deleting by prefix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qa_operator.aws.clients import AwsClients
from qa_operator.aws.s3 import PackageStore

pytestmark = pytest.mark.e2e


def test_uploads_skip_an_object_with_the_same_digest(
    aws: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    aws.client("s3").create_bucket(Bucket="packages")
    store = PackageStore(AwsClients(max_attempts=1).client("s3", "us-east-1"))
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"package bytes")
    assert store.upload(archive, "packages", "p/model.tar.gz", "sha256:1") is True
    assert store.upload(archive, "packages", "p/model.tar.gz", "sha256:1") is False
    assert store.upload(archive, "packages", "p/model.tar.gz", "sha256:2") is True
    assert store.keys("packages", "p/") == ["p/model.tar.gz"]
    store.delete("packages", ["p/model.tar.gz"])
    assert store.keys("packages", "p/") == []
