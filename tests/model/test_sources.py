"""Model sources: the hub's file API on loopback, S3 on moto's server, MLflow's tracking store."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_hub import fake_hub

from qa_operator.model.config import InferenceConfig
from qa_operator.model.packaging import ModelPackage, build_package, load_package
from qa_operator.model.sources import (
    fetch_huggingface,
    fetch_huggingface_metadata,
    fetch_mlflow,
    fetch_s3,
    parse_s3_uri,
)


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_huggingface_snapshot_download_through_the_hub_file_api(
    tiny_qa_model_dir: Path,
    tiny_qa_package: ModelPackage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with fake_hub("acme/tiny-qa", tiny_qa_model_dir) as hub:
        path = fetch_huggingface(
            "acme/tiny-qa", "main", tmp_path / "cache", token="hf_secret", endpoint=hub.url
        )
    assert read_tree(path) == read_tree(tiny_qa_model_dir)
    assert path.name == hub.commit  # the branch was resolved to a commit snapshot
    assert path.is_relative_to(tmp_path / "cache")
    requested = [(method, p) for method, p, _ in hub.requests]
    assert ("GET", "/api/models/acme/tiny-qa/revision/main") in requested
    assert ("GET", f"/acme/tiny-qa/resolve/{hub.commit}/model.safetensors") in requested
    assert {auth for _, _, auth in hub.requests} == {"Bearer hf_secret"}
    # What came down is a model directory build_package takes as is.
    package = build_package(path, tmp_path / "pkg", InferenceConfig())
    assert package.digest == tiny_qa_package.digest


def test_huggingface_metadata_first_then_the_weights_from_the_same_commit(
    tiny_qa_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    model = tmp_path / "model"
    shutil.copytree(tiny_qa_model_dir, model)
    (model / "vocab.txt").write_text("[PAD]\n")
    (model / "extra").mkdir()
    (model / "extra" / "config.json").write_text("{}")  # same name, not the model's config
    cache = tmp_path / "cache"
    with fake_hub("acme/tiny-qa", model) as hub:
        metadata = fetch_huggingface_metadata("acme/tiny-qa", "main", cache, endpoint=hub.url)
        assert sorted(read_tree(metadata)) == [
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "vocab.txt",
        ]
        assert metadata.name == hub.commit
        assert hub.file_requests("model.safetensors") == []
        assert hub.file_requests("extra/config.json") == []

        # The rest by the commit the metadata came from: no second resolution of the branch,
        # and what came down already is not fetched again.
        path = fetch_huggingface("acme/tiny-qa", metadata.name, cache, endpoint=hub.url)
    assert path == metadata
    assert sorted(read_tree(path)) == sorted(read_tree(model))
    assert read_tree(path)["model.safetensors"] == (model / "model.safetensors").read_bytes()
    assert hub.file_requests("config.json").count("GET") == 1
    assert hub.file_requests("model.safetensors").count("GET") == 1
    resolutions = [p for _, p, _ in hub.requests if p.startswith("/api/models/acme/tiny-qa/rev")]
    assert resolutions == ["/api/models/acme/tiny-qa/revision/main"]


def test_huggingface_unknown_revision_fails(tiny_qa_model_dir: Path, tmp_path: Path) -> None:
    with fake_hub("acme/tiny-qa", tiny_qa_model_dir) as hub, pytest.raises(Exception, match="404"):
        fetch_huggingface("acme/tiny-qa", "no-such-branch", tmp_path / "cache", endpoint=hub.url)
    with pytest.raises(ValueError, match="revision"):
        fetch_huggingface("acme/tiny-qa", "", tmp_path / "cache")


def test_s3_prefix_download(aws: Any, tiny_qa_model_dir: Path, tmp_path: Path) -> None:
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="models")
    for name, data in read_tree(tiny_qa_model_dir).items():
        s3.put_object(Bucket="models", Key=f"qa/v1/{name}", Body=data)
    s3.put_object(Bucket="models", Key="qa/v1/nested/extra.txt", Body=b"extra")
    s3.put_object(Bucket="models", Key="qa/v1/", Body=b"")  # a console "folder" marker
    s3.put_object(Bucket="models", Key="qa/v10/other.json", Body=b"{}")  # a sibling prefix
    dest = fetch_s3("s3://models/qa/v1", tmp_path / "dl", s3)
    expected = {**read_tree(tiny_qa_model_dir), "nested/extra.txt": b"extra"}
    assert read_tree(dest) == expected
    with pytest.raises(FileNotFoundError, match="no objects"):
        fetch_s3("s3://models/absent/", tmp_path / "none", s3)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://b/p/q", ("b", "p/q/")),
        ("s3://b/p/q/", ("b", "p/q/")),
        ("s3://b", ("b", "")),
    ],
)
def test_parse_s3_uri(uri: str, expected: tuple[str, str]) -> None:
    assert parse_s3_uri(uri) == expected


def test_parse_s3_uri_rejects_other_schemes() -> None:
    with pytest.raises(ValueError, match="not an S3 URI"):
        parse_s3_uri("https://b/p")


def test_mlflow_run_artifact_is_already_a_package(
    tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    import mlflow

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.create_experiment("qa", artifact_location=(tmp_path / "store").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(tiny_qa_package.path), artifact_path="model")
    client.set_terminated(run.info.run_id)
    path = fetch_mlflow(
        f"runs:/{run.info.run_id}/model", tmp_path / "dl", tracking_uri=tracking_uri
    )
    package = load_package(path)
    assert package.digest == tiny_qa_package.digest
