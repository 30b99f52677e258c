"""The QA model end to end on the tiny model: engine, MLflow pyfunc, fresh process, int8."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest

import qa_operator
from qa_operator.model.config import InferenceConfig
from qa_operator.model.inference import QAEngine, inference_device, load_engine
from qa_operator.model.packaging import ModelPackage, build_package

TEXT = "My name is Alex, I am 32 and live in Copenhagen."
QUESTIONS = ["What is my name?", "How old am I?", "Where do I live?"]
OPERATOR_SRC = str(Path(qa_operator.__file__).resolve().parents[1])


def long_text(words: int = 700) -> str:
    base = "Once upon a time there was a model that lived in Copenhagen with Alex. "
    text = ""
    while len(text.split()) < words:
        text += base
    return text


@pytest.fixture(scope="module")
def engine(tiny_qa_model_dir: Path) -> QAEngine:
    return load_engine(tiny_qa_model_dir, tiny_qa_model_dir, InferenceConfig())


def assert_valid(answer_text: str, start: int, end: int, text: str) -> None:
    assert 0 <= start <= end <= len(text)
    assert answer_text == text[start:end]


def test_answers_are_exact_substrings_with_valid_offsets(engine: QAEngine) -> None:
    answers = engine.answer(QUESTIONS, [TEXT] * 3)
    assert len(answers) == 3
    for a in answers:
        assert_valid(a.answer, a.start, a.end, TEXT)
        assert a.answer  # the demo sentence always has a valid span
        assert 0.0 < a.score <= 1.0
        assert a.answer.strip() == a.answer  # offsets come from tokens, not whitespace


def test_long_context_over_512_tokens_is_read_in_windows(engine: QAEngine) -> None:
    text = long_text()
    assert len(engine.tokenizer(text)["input_ids"]) > 512
    config = InferenceConfig(max_seq_length=128, doc_stride=32, max_answer_length=5)
    [answer] = engine.answer(["Where did the model live?"], [text], config)
    assert_valid(answer.answer, answer.start, answer.end, text)
    assert answer.answer
    assert len(engine.tokenizer(answer.answer, add_special_tokens=False)["input_ids"]) <= 5


def test_batch_results_equal_one_by_one(engine: QAEngine) -> None:
    texts = [TEXT, long_text(300), "Alex lives in Copenhagen.", long_text(80)]
    questions = ["Where?", "Who lived in Copenhagen?", "Who?", "What was there?"]
    batched = engine.answer(
        questions, texts, InferenceConfig(max_seq_length=96, doc_stride=24, batch_size=16)
    )
    one = InferenceConfig(max_seq_length=96, doc_stride=24, batch_size=1)
    singles = [engine.answer([q], [t], one)[0] for q, t in zip(questions, texts, strict=True)]
    for b, s in zip(batched, singles, strict=True):
        assert (b.answer, b.start, b.end) == (s.answer, s.start, s.end)
        assert b.score == pytest.approx(s.score, rel=1e-4)


def test_max_answer_length_bounds_the_answer(engine: QAEngine) -> None:
    [answer] = engine.answer(["Where?"], [TEXT], InferenceConfig(max_answer_length=1))
    tokens = engine.tokenizer(answer.answer, add_special_tokens=False)["input_ids"]
    assert len(tokens) == 1


def test_int8_model_answers_validly(tiny_qa_model_dir: Path) -> None:
    import torch

    int8 = load_engine(
        tiny_qa_model_dir, tiny_qa_model_dir, InferenceConfig(quantize="dynamic-int8")
    )
    linear_types = {
        type(m).__module__ for m in int8.model.modules() if "Linear" in type(m).__name__
    }
    assert any("quantized" in t for t in linear_types), linear_types
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    for a in int8.answer(QUESTIONS, [TEXT] * 3):
        assert_valid(a.answer, a.start, a.end, TEXT)


def test_pyfunc_predict_and_params_override(tiny_qa_package: ModelPackage) -> None:
    model = mlflow.pyfunc.load_model(str(tiny_qa_package.path))
    frame = pd.DataFrame({"question": QUESTIONS, "context": [TEXT] * 3})
    result = model.predict(frame)
    assert list(result.columns) == ["answer", "score", "start", "end"]
    for row in result.itertuples():
        assert_valid(row.answer, row.start, row.end, TEXT)
    one = model.predict(frame, params={"max_answer_length": 1})
    assert all(len(a.split()) == 1 for a in one["answer"])


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"question": ["q"], "text": ["   "]}), "row 0: 'text' is empty"),
        (pd.DataFrame({"question": ["q", None], "text": ["t", "t"]}), "row 1: 'question'"),
    ],
)
def test_pyfunc_rejects_bad_rows(
    tiny_qa_package: ModelPackage, frame: pd.DataFrame, message: str
) -> None:
    model = mlflow.pyfunc.load_model(str(tiny_qa_package.path))
    with pytest.raises(ValueError, match=message):
        model.predict(frame)


def test_fresh_process_loads_and_answers(tiny_qa_package: ModelPackage) -> None:
    # The original post's predict used a module-global tokenizer: NameError in a new process.
    script = (
        "import json, sys, mlflow.pyfunc, pandas as pd\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "df = pd.DataFrame({'question': [sys.argv[2]] * 2, 'text': [sys.argv[3]] * 2})\n"
        "print(json.dumps(m.predict(df).to_dict(orient='records')))\n"
    )
    env = {**os.environ, "PYTHONPATH": OPERATOR_SRC}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tiny_qa_package.path), "What is my name?", TEXT],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(rows) == 2
    for row in rows:
        assert_valid(row["answer"], row["start"], row["end"], TEXT)


def test_int8_package_loads_through_mlflow(tiny_qa_model_dir: Path, tmp_path: Path) -> None:
    package = build_package(
        tiny_qa_model_dir,
        tmp_path / "int8",
        InferenceConfig(quantize="dynamic-int8", num_threads=1),
    )
    model = mlflow.pyfunc.load_model(str(package.path))
    result = model.predict(pd.DataFrame({"question": ["Who?"], "text": [TEXT]}))
    assert_valid(result["answer"][0], int(result["start"][0]), int(result["end"][0]), TEXT)


@pytest.mark.parametrize(
    ("quantize", "cuda_available", "device"),
    [
        ("none", True, "cuda"),
        ("none", False, "cpu"),
        ("dynamic-int8", True, "cpu"),  # PyTorch's dynamic int8 kernels are CPU-only
        ("dynamic-int8", False, "cpu"),
    ],
)
def test_inference_device(quantize: str, cuda_available: bool, device: str) -> None:
    assert inference_device(quantize, cuda_available) == device
