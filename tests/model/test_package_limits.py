"""Serving limits in a real package: stored in model_config, read back by the serving app, and
the windows bound checked against the real tokenizer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from qa_operator.model.config import InferenceConfig
from qa_operator.model.limits import (
    SERVING_LIMITS_KEY,
    ServingLimits,
    text_tokens_upper_bound,
    windows_needed,
)
from qa_operator.model.packaging import ModelPackage, build_package
from qa_operator.model.serving import build_app

LIMITS = ServingLimits(max_rows=4, max_windows_per_row=20)
WORDS = (
    *("My", "name", "is", "Alex", ",", "I", "am", "32", "and", "live", "in", "Copenhagen", "."),
    *("é", "ü", "日本", "한국", "Zürich"),  # several bytes per character
)


def test_default_limits_keep_the_package_digest(
    tiny_qa_model_dir: Path, tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    package = build_package(tiny_qa_model_dir, tmp_path / "p", InferenceConfig(), limits=None)
    explicit = build_package(
        tiny_qa_model_dir, tmp_path / "q", InferenceConfig(), limits=ServingLimits()
    )
    assert package.digest == explicit.digest == tiny_qa_package.digest
    other = build_package(tiny_qa_model_dir, tmp_path / "r", InferenceConfig(), limits=LIMITS)
    assert other.digest != tiny_qa_package.digest
    with pytest.raises(ValueError, match="max_rows must be a positive integer"):
        build_package(
            tiny_qa_model_dir, tmp_path / "s", InferenceConfig(), limits=ServingLimits(max_rows=0)
        )


def test_the_serving_app_takes_the_package_limits_and_tokenizer(
    tiny_qa_model_dir: Path, tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    package = build_package(tiny_qa_model_dir, tmp_path / "p", InferenceConfig(), limits=LIMITS)
    assert f"{SERVING_LIMITS_KEY}:" in (package.path / "MLmodel").read_text()
    layer = build_app(str(package.path))
    assert layer.limits == LIMITS
    assert layer.config == InferenceConfig()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qa_model_dir))
    questions = ["What is my name?", "Where do I live, Copenhagen?"]
    expected = [len(tokenizer(q, add_special_tokens=False)["input_ids"]) for q in questions]
    assert layer.tokens.questions(questions) == expected
    assert layer.tokens.special_per_pair == 3
    assert build_app(str(tiny_qa_package.path)).limits == ServingLimits()


@pytest.mark.parametrize(("length", "stride"), [(384, 128), (64, 10), (32, 0), (40, 20)])
def test_the_windows_bound_holds_for_the_real_tokenizer(
    tiny_qa_model_dir: Path, length: int, stride: int
) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_qa_model_dir))
    rnd = random.Random(length)
    words = WORDS
    for n in (1, 10, 50, 200, 1_000, 3_000):
        question = " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 8)))
        text = " ".join(rnd.choice(words) for _ in range(n))
        encoded = tokenizer(
            [question],
            [text],
            truncation="only_second",
            max_length=length,
            stride=stride,
            return_overflowing_tokens=True,
        )
        q_tokens = len(tokenizer(question, add_special_tokens=False)["input_ids"])
        t_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        special = tokenizer.num_special_tokens_to_add(pair=True)
        actual = len(encoded["input_ids"])
        assert windows_needed(t_tokens, q_tokens, special, length, stride) == actual
        bound = windows_needed(text_tokens_upper_bound(text), q_tokens, special, length, stride)
        assert bound is not None and bound >= actual
