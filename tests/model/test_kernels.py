"""oneDNN Linear layers: same outputs as the stock layers, activations fused only where exact."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import nn

from qa_operator.model import kernels
from qa_operator.model.config import InferenceConfig
from qa_operator.model.inference import QAEngine, load_engine, prepare_model
from qa_operator.model.kernels import OneDnnLinear, PostOp, use_onednn_linears
from qa_operator.model.tiny import build_tiny_qa_model, make_tiny_qa_model_dir

pytestmark = pytest.mark.skipif(
    not kernels.onednn_available(), reason="this torch build has no oneDNN"
)

TEXTS = [
    "My name is Alex, I am 32 and live in Copenhagen.",
    "Once upon a time there was a model. It lived in Copenhagen with Alex for years.",
    "Who works there?",
]
QUESTIONS = ["What is my name?", "Where did the model live?", "Who?"]


def logits(model: nn.Module, tokenizer: object) -> torch.Tensor:
    """Start and end logits for a padded batch of three rows of different lengths."""
    batch = tokenizer(QUESTIONS, TEXTS, padding=True, return_tensors="pt")  # type: ignore[operator]
    with torch.inference_mode():
        output = model(**batch)
    return torch.stack([output.start_logits, output.end_logits])


def linear_count(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


@pytest.mark.parametrize(
    ("hidden_act", "fused"),
    [
        ("gelu", PostOp("gelu", "none")),
        ("gelu_new", PostOp("gelu", "tanh")),
        ("relu", PostOp("relu", "")),
    ],
)
def test_every_linear_moves_to_onednn_and_logits_agree(hidden_act: str, fused: PostOp) -> None:
    tokenizer, stock = build_tiny_qa_model(3, hidden_act=hidden_act)
    model = copy.deepcopy(stock)
    linears = linear_count(stock, nn.Linear)

    assert use_onednn_linears(model, min_weights=0) == linears
    assert linear_count(model, nn.Linear) == 0
    assert linear_count(model, OneDnnLinear) == linears
    torch.testing.assert_close(logits(model, tokenizer), logits(stock, tokenizer))
    for layer in model.bert.encoder.layer:
        assert layer.intermediate.dense.post_op == fused
        assert isinstance(layer.intermediate.intermediate_act_fn, nn.Identity)


def test_an_activation_onednn_lacks_is_left_unfused_and_exact() -> None:
    tokenizer, stock = build_tiny_qa_model(3, hidden_act="silu")
    model = copy.deepcopy(stock)

    use_onednn_linears(model, min_weights=0)

    intermediate = model.bert.encoder.layer[0].intermediate
    assert intermediate.dense.post_op == kernels.NO_POST_OP
    assert not isinstance(intermediate.intermediate_act_fn, nn.Identity)
    torch.testing.assert_close(logits(model, tokenizer), logits(stock, tokenizer))


def test_small_layers_stay_on_the_stock_kernel() -> None:
    # hidden 128: attention 128 x 128 and the 128 x 2 QA head are small; the feed-forward
    # 128 x 512 pair is the smallest size converted.
    _, model = build_tiny_qa_model(5, hidden_size=128, num_heads=2, intermediate_size=512)

    converted = use_onednn_linears(model)

    layer = model.bert.encoder.layer[0]
    assert isinstance(layer.intermediate.dense, OneDnnLinear)
    assert isinstance(layer.output.dense, OneDnnLinear)
    assert isinstance(layer.attention.self.query, nn.Linear)
    assert isinstance(model.qa_outputs, nn.Linear)
    assert converted == 2 * len(model.bert.encoder.layer)


def test_the_engine_gives_the_same_answers_on_either_kernel() -> None:
    tokenizer, stock = build_tiny_qa_model(5, hidden_size=128, num_heads=2, intermediate_size=512)
    config = InferenceConfig(batch_size=2)
    onednn = QAEngine(tokenizer, prepare_model(copy.deepcopy(stock), "none"), config)
    plain = QAEngine(tokenizer, prepare_model(stock, "none", onednn=False), config)

    assert linear_count(onednn.model, OneDnnLinear) > 0
    assert linear_count(plain.model, OneDnnLinear) == 0
    got, expected = onednn.answer(QUESTIONS, TEXTS), plain.answer(QUESTIONS, TEXTS)
    assert [(a.answer, a.start, a.end) for a in got] == [
        (a.answer, a.start, a.end) for a in expected
    ]
    assert [a.score for a in got] == pytest.approx([a.score for a in expected], rel=1e-4)


def test_quantized_models_keep_their_int8_layers() -> None:
    _, model = build_tiny_qa_model(5)
    quantized = prepare_model(model, "dynamic-int8")
    assert linear_count(quantized, OneDnnLinear) == 0


def test_without_onednn_the_model_is_left_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    _, model = build_tiny_qa_model(5)
    linears = linear_count(model, nn.Linear)

    assert use_onednn_linears(model, min_weights=0) == 0
    assert linear_count(model, nn.Linear) == linears


def test_a_layer_that_does_not_reproduce_its_reference_is_not_swapped_in() -> None:
    linear = nn.Linear(16, 8)
    assert kernels._checked(linear, kernels.NO_POST_OP, linear) is not None
    # A reference the kernel cannot match (the wrong activation) keeps the stock layer.
    assert kernels._checked(linear, PostOp("relu", ""), linear) is None
    assert (
        kernels._checked(linear, PostOp("gelu", "tanh"), lambda x: nn.functional.gelu(linear(x)))
        is None
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU the model runs on CUDA")
def test_a_loaded_engine_runs_on_cpu_with_onednn_layers(tmp_path: Path) -> None:
    model_dir = make_tiny_qa_model_dir(
        tmp_path / "model", 5, hidden_size=128, num_heads=2, intermediate_size=512
    )

    engine = load_engine(model_dir, model_dir, InferenceConfig())

    assert isinstance(engine, QAEngine)
    assert engine.device == torch.device("cpu")
    assert linear_count(engine.model, OneDnnLinear) == 2 * engine.model.config.num_hidden_layers
    [answer] = engine.answer(QUESTIONS[:1], TEXTS[:1])
    assert answer.answer == TEXTS[0][answer.start : answer.end]
