"""The packager: one package per source, however many resources ask for it at once; a source
that is not a QA model is refused, and fetched once, not on every pass."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from model.fake_hub import fake_hub
from qa_operator.artifacts import ModelPackager
from qa_operator.aws.clients import AwsClients
from qa_operator.errors import TerminalError
from qa_operator.model.limits import SERVING_LIMITS_KEY, ServingLimits
from qa_operator.spec import HuggingFaceSource, parse_spec

pytestmark = pytest.mark.e2e


@pytest.fixture
def sources(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """moto's S3, for the packager's clients too, with an empty bucket "sources"."""
    for key, value in aws.env().items():
        monkeypatch.setenv(key, value)
    aws.client("s3").create_bucket(Bucket="sources")
    return aws


@pytest.fixture
def model_uri(sources: Any, tiny_qa_model_dir: Path) -> str:
    return _upload(sources, tiny_qa_model_dir, "tiny")


@pytest.fixture
def sequence_classifier_dir(tiny_qa_model_dir: Path, tmp_path: Path) -> Path:
    """A tiny BERT with a classification head (not QA) and the QA model's fast tokenizer."""
    from transformers import BertConfig, BertForSequenceClassification

    from qa_operator.model.tiny import tiny_vocab

    config = BertConfig(
        vocab_size=len(tiny_vocab()),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    path = tmp_path / "classifier"
    BertForSequenceClassification(config).save_pretrained(str(path))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_qa_model_dir / name, path / name)
    return path


def _upload(aws: Any, directory: Path, prefix: str) -> str:
    s3 = aws.client("s3")
    for path in directory.iterdir():
        s3.upload_file(str(path), "sources", f"{prefix}/{path.name}")
    return f"s3://sources/{prefix}/"


def _packager(
    work: Path, limits: ServingLimits | None = None, hub_endpoint: str | None = None
) -> ModelPackager:
    clients = AwsClients(max_attempts=1)
    return ModelPackager(
        work,
        max_concurrent=2,
        s3_client=lambda r: clients.client("s3", r),
        limits=limits,
        hub_endpoint=hub_endpoint,
    )


def _spec(uri: str, max_seq_length: int = 128) -> Any:
    inference = {"maxSeqLength": max_seq_length, "docStride": 32}
    return parse_spec(
        {
            "model": {"s3": {"uri": uri}, "inference": inference},
            "endpoint": {"instanceType": "ml.m5.large"},
        }
    )


def _hub_spec(model_id: str) -> Any:
    return parse_spec(
        {
            "model": {
                "huggingface": {"id": model_id},
                "inference": {"maxSeqLength": 128, "docStride": 32},
            },
            "endpoint": {"instanceType": "ml.m5.large"},
        }
    )


def _fetches(aws: Any) -> tuple[int, int]:
    return aws.calls("s3", "ListObjectsV2"), aws.calls("s3", "GetObject")


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


def test_engine_onnxruntime_without_its_export_toolchain_is_refused_before_fetching(
    model_uri: str, aws: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = parse_spec(
        {
            "model": {"s3": {"uri": model_uri}, "inference": {"engine": "onnxruntime"}},
            "endpoint": {"instanceType": "ml.m5.large"},
        }
    )
    packager = _packager(tmp_path)
    with monkeypatch.context() as image:
        image.setitem(sys.modules, "torch", None)  # as in the operator image
        with pytest.raises(TerminalError) as refused:
            packager.prepare(spec, "us-east-1")
    assert refused.value.reason == "EngineUnavailable"
    assert "torch is not installed here" in refused.value.message
    assert "use engine torch" in refused.value.message
    assert _fetches(aws) == (0, 0), "the source was fetched for a package that cannot be built"
    # Not remembered: where the toolchain is installed the same spec packages.
    assert packager.prepare(spec, "us-east-1").archive.is_file()


def test_an_empty_source_prefix_is_a_terminal_error(model_uri: str, tmp_path: Path) -> None:
    with pytest.raises(TerminalError) as raised:
        _packager(tmp_path).prepare(_spec("s3://sources/nothing-here/"), "us-east-1")
    assert raised.value.reason == "ModelNotFound"
    assert "s3 s3://sources/nothing-here/" in raised.value.message


def test_a_model_without_a_qa_head_is_refused_once_until_the_spec_changes(
    sources: Any,
    sequence_classifier_dir: Path,
    tiny_qa_model_dir: Path,
    tmp_path: Path,
) -> None:
    uri = _upload(sources, sequence_classifier_dir, "classifier")
    with pytest.raises(TerminalError) as first:
        _packager(tmp_path).prepare(_spec(uri), "us-east-1")
    assert first.value.reason == "InvalidModel"
    assert first.value.message == (
        f"s3 {uri}: architectures ['BertForSequenceClassification']: "
        "a *ForQuestionAnswering model is needed"
    )
    fetched = _fetches(sources)
    assert fetched[0] == 1 and fetched[1] >= 3

    # Fixed in place: the same spec still gets the remembered answer, from this packager or a
    # restarted one, without fetching again.
    _upload(sources, tiny_qa_model_dir, "classifier")
    for packager in (_packager(tmp_path), _packager(tmp_path)):
        with pytest.raises(TerminalError) as again:
            packager.prepare(_spec(uri), "us-east-1")
        assert (again.value.reason, again.value.message) == ("InvalidModel", first.value.message)
    assert _fetches(sources) == fetched

    # A changed spec is a new source key: fetched again, and now it is a QA model.
    prepared = _packager(tmp_path).prepare(_spec(uri, max_seq_length=256), "us-east-1")
    assert prepared.archive.is_file()
    assert _fetches(sources)[0] == fetched[0] + 1


def test_a_model_without_a_fast_tokenizer_is_refused(
    sources: Any, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_qa_model_dir, model)
    (model / "tokenizer.json").unlink()
    uri = _upload(sources, model, "no-tokenizer")
    with pytest.raises(TerminalError) as raised:
        _packager(tmp_path / "work").prepare(_spec(uri), "us-east-1")
    assert raised.value.reason == "InvalidModel"
    assert raised.value.message == (
        f"s3 {uri}: no fast tokenizer (tokenizer.json) and no vocabulary to build one from"
    )


def test_a_slow_vocabulary_that_converts_to_a_fast_tokenizer_is_accepted(
    sources: Any, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    from qa_operator.model.tiny import tiny_vocab

    model = tmp_path / "vocab-only"
    shutil.copytree(tiny_qa_model_dir, model)
    (model / "tokenizer.json").unlink()
    by_id = sorted(tiny_vocab().items(), key=lambda item: item[1])
    (model / "vocab.txt").write_text("".join(f"{token}\n" for token, _ in by_id))
    uri = _upload(sources, model, "vocab-only")
    prepared = _packager(tmp_path / "work").prepare(_spec(uri), "us-east-1")
    assert (prepared.package_dir / "artifacts" / "model" / "vocab.txt").is_file()


def _model_config(package_dir: Path) -> dict[str, Any]:
    """MLflow writes the model_config into MLmodel as the pyfunc flavor's `config`."""
    import yaml

    mlmodel = yaml.safe_load((package_dir / "MLmodel").read_text())
    config: dict[str, Any] = mlmodel["flavors"]["python_function"]["config"]
    return config


def test_the_operators_serving_limits_are_in_the_package_and_its_key(
    model_uri: str, tmp_path: Path
) -> None:
    limits = ServingLimits(max_rows=8, max_json_depth=5)
    default = _packager(tmp_path).prepare(_spec(model_uri), "us-east-1")
    limited_packager = _packager(tmp_path, limits)
    limited = limited_packager.prepare(_spec(model_uri), "us-east-1")
    assert _model_config(limited.package_dir)[SERVING_LIMITS_KEY] == limits.to_dict()
    assert SERVING_LIMITS_KEY not in _model_config(default.package_dir)
    assert limited.digest != default.digest
    assert limited.package_dir.parent.name == limited_packager.key(_spec(model_uri))
    assert default.package_dir.parent != limited.package_dir.parent


def test_default_limits_leave_the_package_and_its_key_unchanged(
    model_uri: str, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    from qa_operator.desired import source_key
    from qa_operator.model import packaging

    prepared = _packager(tmp_path / "work", ServingLimits()).prepare(_spec(model_uri), "us-east-1")
    spec = _spec(model_uri)
    before = packaging.build_package(tiny_qa_model_dir, tmp_path / "before", spec.inference)
    assert prepared.digest == before.digest
    assert prepared.package_dir.parent.name == source_key(spec)


@pytest.fixture
def hub_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)


@pytest.mark.parametrize("kind", ["classifier", "no-fast-tokenizer"])
def test_a_hub_model_that_is_not_qa_is_refused_before_its_weights_are_fetched(
    kind: str,
    hub_client: None,
    sequence_classifier_dir: Path,
    tiny_qa_model_dir: Path,
    tmp_path: Path,
) -> None:
    model = tmp_path / "model"
    shutil.copytree(sequence_classifier_dir if kind == "classifier" else tiny_qa_model_dir, model)
    problem = "architectures ['BertForSequenceClassification']: a *ForQuestionAnswering model"
    if kind == "no-fast-tokenizer":
        (model / "tokenizer.json").unlink()
        problem = "no fast tokenizer (tokenizer.json) and no vocabulary to build one from"
    assert (model / "model.safetensors").is_file()
    work = tmp_path / "work"
    with fake_hub("acme/not-qa", model) as hub:
        with pytest.raises(TerminalError) as first:
            _packager(work, hub_endpoint=hub.url).prepare(_hub_spec("acme/not-qa"), "us-east-1")
        assert first.value.reason == "InvalidModel"
        assert first.value.message.startswith(f"huggingface acme/not-qa@main: {problem}")
        assert hub.file_requests("config.json").count("GET") == 1
        assert hub.file_requests("model.safetensors") == [], "the weights were fetched"
        assert not list((work / "huggingface").rglob("model.safetensors"))

        # Remembered: a restarted packager answers the same without asking the hub again.
        asked = len(hub.requests)
        with pytest.raises(TerminalError) as again:
            _packager(work, hub_endpoint=hub.url).prepare(_hub_spec("acme/not-qa"), "us-east-1")
        assert (again.value.reason, again.value.message) == ("InvalidModel", first.value.message)
        assert len(hub.requests) == asked
    assert [p.name for p in (work / "packages").glob("*.failed.json")] == [
        f"{_packager(work).key(_hub_spec('acme/not-qa'))}.failed.json"
    ]


def test_a_qa_hub_model_is_checked_then_packaged_with_each_file_fetched_once(
    hub_client: None, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    from qa_operator.model import packaging

    spec = _hub_spec("acme/tiny-qa")
    with fake_hub("acme/tiny-qa", tiny_qa_model_dir) as hub:
        prepared = _packager(tmp_path / "work", hub_endpoint=hub.url).prepare(spec, "us-east-1")
    assert prepared.archive.is_file()
    expected = packaging.build_package(tiny_qa_model_dir, tmp_path / "direct", spec.inference)
    assert prepared.digest == expected.digest
    for name in hub.files():
        assert hub.file_requests(name).count("GET") == 1, name
    assert not list((tmp_path / "work" / "packages").glob("*.failed.json"))


def test_a_hub_branch_resolves_to_its_commit_and_a_moved_branch_packages_the_new_commit(
    hub_client: None, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    import dataclasses
    import json

    from qa_operator import freshness

    model = tmp_path / "model"
    shutil.copytree(tiny_qa_model_dir, model)
    spec = dataclasses.replace(_hub_spec("acme/tiny-qa"), refresh="OnResync")
    with fake_hub("acme/tiny-qa", model) as hub:
        packager = _packager(tmp_path / "work", hub_endpoint=hub.url)
        first_commit = packager.hub_commit(spec.source)
        assert first_commit == hub.commit
        assert hub.revision_requests() == ["main"]
        assert not hub.file_requests("config.json"), "resolving downloaded a file"
        first = dataclasses.replace(
            spec, source_version=freshness.huggingface_version(first_commit)
        )
        packaged = packager.prepare(first, "us-east-1")

        # The branch moves: new files, a new commit. The same spec resolves to it.
        config = json.loads((model / "config.json").read_text())
        (model / "config.json").write_text(json.dumps({**config, "retrained": "2026-11-27"}))
        hub.commit = "fedcba9876543210fedcba9876543210fedcba98"
        moved_commit = packager.hub_commit(spec.source)
        assert moved_commit == hub.commit
        moved = dataclasses.replace(
            spec, source_version=freshness.huggingface_version(moved_commit)
        )
        assert packager.key(moved) != packager.key(first)
        repackaged = packager.prepare(moved, "us-east-1")
        assert repackaged.digest != packaged.digest
        # Fetched at the commit the key names, not at the branch again.
        resolved = [path for _, path, _ in hub.requests if "/resolve/" in path]
        assert any(f"/resolve/{moved_commit}/config.json" in path for path in resolved)
        assert not any("/resolve/main/" in path for path in resolved)


def test_a_hub_revision_that_does_not_exist_is_terminal(
    hub_client: None, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    spec = parse_spec(
        {
            "model": {"huggingface": {"id": "acme/tiny-qa", "revision": "v9"}},
            "endpoint": {"instanceType": "ml.m5.large"},
        }
    )
    assert isinstance(spec.source, HuggingFaceSource)
    with fake_hub("acme/tiny-qa", tiny_qa_model_dir) as hub, pytest.raises(TerminalError) as error:
        _packager(tmp_path / "work", hub_endpoint=hub.url).hub_commit(spec.source)
    assert error.value.reason == "ModelNotFound"
    assert "huggingface acme/tiny-qa@v9" in error.value.message
