"""Is a model source a QA model we can serve? The pure checks as tables, and the packager's
MLflow path against a real SQLite tracking store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qa_operator.artifacts import ModelPackager
from qa_operator.errors import TerminalError
from qa_operator.model.config import InferenceConfig
from qa_operator.model.packaging import ModelPackage
from qa_operator.model.sources import fetch_mlflow
from qa_operator.model.validation import (
    TokenizerFiles,
    architecture_problem,
    mlmodel_problem,
    non_default_inference,
    tokenizer_files,
)
from qa_operator.spec import parse_spec

QA_INPUTS = (
    '[{"type": "string", "name": "question", "required": true},'
    ' {"type": "string", "name": "text", "required": false}]'
)
QA_OUTPUTS = '[{"type": "string", "name": "answer"}, {"type": "double", "name": "score"}]'
PYFUNC = {"python_function": {"loader_module": "mlflow.pyfunc.loaders.code_model"}}


@pytest.mark.parametrize(
    ("config", "found"),
    [
        ({"architectures": ["BertForQuestionAnswering"]}, None),
        ({"architectures": ["Other", "RobertaForQuestionAnswering"]}, None),
        (
            {"architectures": ["BertForSequenceClassification"]},
            "architectures ['BertForSequenceClassification']: "
            "a *ForQuestionAnswering model is needed",
        ),
        ({"architectures": []}, "config.json names no architectures"),
        ({"model_type": "bert"}, "config.json names no architectures"),
        ({"architectures": "BertForQuestionAnswering"}, "config.json names no architectures"),
    ],
)
def test_architecture_problem(config: dict[str, Any], found: str | None) -> None:
    problem = architecture_problem(config)
    if found is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(found)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ({"config.json", "tokenizer.json", "vocab.txt"}, TokenizerFiles.FAST),
        ({"config.json", "tokenizer.json"}, TokenizerFiles.FAST),
        ({"config.json", "tokenizer_config.json", "vocab.txt"}, TokenizerFiles.CONVERTIBLE),
        ({"vocab.json", "merges.txt"}, TokenizerFiles.CONVERTIBLE),
        ({"spiece.model"}, TokenizerFiles.CONVERTIBLE),
        ({"config.json", "tokenizer_config.json", "model.safetensors"}, TokenizerFiles.NONE),
    ],
)
def test_tokenizer_files(names: set[str], expected: TokenizerFiles) -> None:
    assert tokenizer_files(names) is expected


@pytest.mark.parametrize(
    ("mlmodel", "found"),
    [
        ({"flavors": PYFUNC, "signature": {"inputs": QA_INPUTS, "outputs": QA_OUTPUTS}}, None),
        (
            {"flavors": {"sklearn": {}}, "signature": {"inputs": QA_INPUTS}},
            "MLmodel flavors ['sklearn']: a python_function model is needed",
        ),
        ({"flavors": PYFUNC}, "MLmodel has no input signature"),
        (
            {
                "flavors": PYFUNC,
                "signature": {"inputs": '[{"type": "double", "name": "x"}]', "outputs": "[]"},
            },
            "input schema [x: double]: string columns question and text are needed",
        ),
        (
            {
                "flavors": PYFUNC,
                "signature": {
                    "inputs": '[{"type": "string", "name": "question"},'
                    ' {"type": "long", "name": "text"}]',
                    "outputs": QA_OUTPUTS,
                },
            },
            "input schema [question: string, text: long]",
        ),
        (
            {
                "flavors": PYFUNC,
                "signature": {"inputs": '[{"type": "tensor", "tensor-spec": {}}]'},
            },
            "input schema without named columns",
        ),
        (
            {"flavors": PYFUNC, "signature": {"inputs": QA_INPUTS}},
            "output schema without named columns: a string column answer is needed",
        ),
        (
            {
                "flavors": PYFUNC,
                "signature": {"inputs": QA_INPUTS, "outputs": '[{"type": "long", "name": "y"}]'},
            },
            "output schema [y: long]",
        ),
        (
            {"flavors": PYFUNC, "signature": {"inputs": "not json"}},
            "input schema 'not json'",
        ),
    ],
)
def test_mlmodel_problem(mlmodel: dict[str, Any], found: str | None) -> None:
    problem = mlmodel_problem(mlmodel)
    if found is None:
        assert problem is None
    else:
        assert problem is not None and problem.startswith(found)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (InferenceConfig(), []),
        (InferenceConfig(max_seq_length=128, doc_stride=32), ["maxSeqLength", "docStride"]),
        (InferenceConfig(quantize="dynamic-int8"), ["quantize"]),
        (InferenceConfig(engine="onnxruntime"), ["engine"]),
    ],
)
def test_non_default_inference(config: InferenceConfig, expected: list[str]) -> None:
    assert non_default_inference(config) == expected


def _packager(work: Path) -> ModelPackager:
    def no_s3(region: str) -> Any:
        raise AssertionError("an mlflow source never talks to S3")

    return ModelPackager(work, max_concurrent=1, s3_client=no_s3)


def _mlflow_spec(model_uri: str, tracking_uri: str | None, **inference: Any) -> Any:
    mlflow: dict[str, Any] = {"modelUri": model_uri}
    if tracking_uri is not None:
        mlflow["trackingUri"] = tracking_uri
    return parse_spec(
        {
            "model": {"mlflow": mlflow, "inference": inference},
            "endpoint": {"instanceType": "ml.m5.large"},
        }
    )


def _log_run_artifacts(tmp_path: Path, model_dir: Path) -> tuple[str, str]:
    """(tracking URI, runs:/ model URI) of `model_dir` logged to a SQLite tracking store."""
    import mlflow

    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment = client.create_experiment("qa", artifact_location=(tmp_path / "store").as_uri())
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
    client.set_terminated(run.info.run_id)
    return tracking_uri, f"runs:/{run.info.run_id}/model"


def _save_regressor(path: Path) -> Path:
    """A pyfunc model that is not a QA model: one double column in, one out."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.pyfunc import PythonModel
    from mlflow.types import ColSpec, Schema

    class Doubler(PythonModel):
        def predict(self, context: Any, model_input: Any, params: Any = None) -> Any:
            return model_input * 2

    signature = ModelSignature(
        inputs=Schema([ColSpec("double", "x")]), outputs=Schema([ColSpec("double", "y")])
    )
    mlflow.pyfunc.save_model(
        path=str(path), python_model=Doubler(), signature=signature, pip_requirements=["mlflow"]
    )
    return path


def test_an_mlflow_model_that_is_not_a_qa_model_is_invalid(tmp_path: Path) -> None:
    tracking_uri, model_uri = _log_run_artifacts(tmp_path, _save_regressor(tmp_path / "regressor"))
    with pytest.raises(TerminalError) as raised:
        _packager(tmp_path / "work").prepare(_mlflow_spec(model_uri, tracking_uri), "us-east-1")
    assert raised.value.reason == "InvalidModel"
    assert raised.value.message == (
        f"mlflow {model_uri}: input schema [x: double]: string columns question and text are needed"
    )


def test_a_packaged_qa_model_from_mlflow_passes_the_checks(
    tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    tracking_uri, model_uri = _log_run_artifacts(tmp_path, tiny_qa_package.path)
    prepared = _packager(tmp_path / "work").prepare(
        _mlflow_spec(model_uri, tracking_uri), "us-east-1"
    )
    assert prepared.digest == tiny_qa_package.digest


def test_inference_settings_do_not_apply_to_an_mlflow_source(tmp_path: Path) -> None:
    spec = _mlflow_spec("runs:/abc/model", "sqlite:///unused.db", maxSeqLength=128, docStride=32)
    with pytest.raises(TerminalError) as raised:
        _packager(tmp_path / "work").prepare(spec, "us-east-1")
    assert raised.value.reason == "FieldNotApplicable"
    assert "spec.model.inference (maxSeqLength, docStride)" in raised.value.message
    assert not (tmp_path / "work").exists(), "nothing was fetched"


@pytest.mark.parametrize("model_uri", ["models:/x/1", "models:/x@champion", "runs:/abc/model"])
def test_a_tracking_server_uri_without_a_tracking_uri_is_refused(
    model_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TerminalError) as raised:
        _packager(tmp_path / "work").prepare(_mlflow_spec(model_uri, None), "us-east-1")
    assert raised.value.reason == "NoTrackingUri"
    assert "spec.model.mlflow.trackingUri" in raised.value.message
    with pytest.raises(TerminalError, match="tracking server"):
        fetch_mlflow(model_uri, tmp_path / "dl")
    # No silent local store, and nothing remembered: setting the URI for the operator fixes it.
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == []


def test_the_operator_wide_tracking_uri_is_used(
    tiny_qa_package: ModelPackage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking_uri, model_uri = _log_run_artifacts(tmp_path, tiny_qa_package.path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    path = fetch_mlflow(model_uri, tmp_path / "dl")
    assert (path / "MLmodel").is_file()
