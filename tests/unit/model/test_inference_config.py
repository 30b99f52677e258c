"""InferenceConfig validation and round trips."""

from __future__ import annotations

import pytest

from qa_operator.model.config import InferenceConfig


def test_defaults_are_valid_and_round_trip() -> None:
    config = InferenceConfig()
    assert config.validate() is config
    assert InferenceConfig.from_dict(config.to_dict()) == config
    assert config.to_dict() == {
        "max_answer_length": 30,
        "max_seq_length": 384,
        "doc_stride": 128,
        "batch_size": 16,
        "quantize": "none",
        "num_threads": None,
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"doc_stride": 384}, "doc_stride must be >= 0 and smaller than max_seq_length"),
        ({"doc_stride": -1}, "doc_stride"),
        ({"max_seq_length": 513}, "max_seq_length must be between 32 and 512"),
        ({"max_seq_length": 16, "doc_stride": 4}, "max_seq_length"),
        ({"max_answer_length": 0}, "max_answer_length"),
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"max_answer_length": True}, "max_answer_length must be an integer"),
        ({"quantize": "int4"}, "quantize must be one of none, dynamic-int8"),
        ({"engine": "tensorrt"}, "engine must be one of torch, onnxruntime"),
        ({"num_threads": 0}, "num_threads"),
    ],
)
def test_bad_settings_are_named(changes: dict[str, object], message: str) -> None:
    data = {**InferenceConfig().to_dict(), **changes}
    with pytest.raises(ValueError, match=message):
        InferenceConfig.from_dict(data)


def test_unknown_keys_are_an_error_and_missing_keys_default() -> None:
    with pytest.raises(ValueError, match=r"unknown inference setting.*maxAnswerLength"):
        InferenceConfig.from_dict({"maxAnswerLength": 3})
    assert InferenceConfig.from_dict({"quantize": "dynamic-int8"}) == InferenceConfig(
        quantize="dynamic-int8"
    )


def test_request_overrides_merge_and_validate() -> None:
    base = InferenceConfig(max_seq_length=256, doc_stride=64)
    assert base.merged({"batch_size": 4, "doc_stride": None}) == InferenceConfig(
        max_seq_length=256, doc_stride=64, batch_size=4
    )
    with pytest.raises(ValueError, match="doc_stride"):
        base.merged({"doc_stride": 256})


def test_the_engine_round_trips_and_the_default_one_is_left_out() -> None:
    onnx = InferenceConfig(engine="onnxruntime", quantize="dynamic-int8")
    assert onnx.to_dict()["engine"] == "onnxruntime"
    assert InferenceConfig.from_dict(onnx.to_dict()) == onnx
    assert onnx.merged({"batch_size": 4}).engine == "onnxruntime"
    assert "engine" not in InferenceConfig().to_dict()
    assert InferenceConfig.from_dict({}).engine == "torch"
