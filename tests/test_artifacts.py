"""The packager: one package per source, however many resources ask for it at once."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from qa_operator.artifacts import ModelPackager
from qa_operator.aws.clients import AwsClients
from qa_operator.errors import TerminalError
from qa_operator.spec import parse_spec

pytestmark = pytest.mark.e2e


@pytest.fixture
def model_uri(aws: Any, tiny_qa_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="sources")
    for path in tiny_qa_model_dir.iterdir():
        s3.upload_file(str(path), "sources", f"tiny/{path.name}")
    return "s3://sources/tiny/"


def _packager(work: Path) -> ModelPackager:
    clients = AwsClients(max_attempts=1)
    return ModelPackager(work, max_concurrent=2, s3_client=lambda r: clients.client("s3", r))


def _spec(uri: str) -> Any:
    return parse_spec(
        {
            "model": {"s3": {"uri": uri}, "inference": {"maxSeqLength": 128, "docStride": 32}},
            "endpoint": {"instanceType": "ml.m5.large"},
        }
    )


def test_concurrent_requests_for_one_source_package_it_once(
    model_uri: str, aws: Any, tmp_path: Path
) -> None:
    packager = _packager(tmp_path)
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(packager.prepare(_spec(model_uri), "us-east-1"))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.digest for r in results}) == 1
    assert all(r.archive.is_file() for r in results)
    assert aws.calls("s3", "ListObjectsV2") == 1, "the source was fetched more than once"


def test_an_empty_source_prefix_is_a_terminal_error(model_uri: str, tmp_path: Path) -> None:
    with pytest.raises(TerminalError) as raised:
        _packager(tmp_path).prepare(_spec("s3://sources/nothing-here/"), "us-east-1")
    assert raised.value.reason == "ModelNotFound"
    assert "s3 s3://sources/nothing-here/" in raised.value.message
