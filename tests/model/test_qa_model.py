"""The QA model end to end on the tiny model: engine, MLflow pyfunc, fresh process, int8.

The engine tests run on every engine (torch, and onnxruntime from a package's exported graph).
"""

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
from qa_operator.model.inference import QAEngine, WindowedQA, inference_device, load_engine
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


ONNX = InferenceConfig(engine="onnxruntime")
ONNX_INT8 = InferenceConfig(engine="onnxruntime", quantize="dynamic-int8")


@pytest.fixture(scope="module")
def onnx_packages(
    tiny_qa_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, ModelPackage]:
    root = tmp_path_factory.mktemp("onnx-packages")
    return {
        config.quantize: build_package(tiny_qa_model_dir, root / config.quantize, config)
        for config in (ONNX, ONNX_INT8)
    }


def load_package_engine(package: ModelPackage, config: InferenceConfig) -> WindowedQA:
    artifacts = package.path / "artifacts"
    return load_engine(artifacts / "model", artifacts / "model", config, artifacts / "onnx")


@pytest.fixture(scope="module", params=["torch", "onnxruntime"])
def engine(
    request: pytest.FixtureRequest, tiny_qa_model_dir: Path, onnx_packages: dict[str, ModelPackage]
) -> WindowedQA:
    if request.param == "onnxruntime":
        return load_package_engine(onnx_packages["none"], ONNX)
    return load_engine(tiny_qa_model_dir, tiny_qa_model_dir, InferenceConfig())


def assert_valid(answer_text: str, start: int, end: int, text: str) -> None:
    assert 0 <= start <= end <= len(text)
    assert answer_text == text[start:end]


def test_answers_are_exact_substrings_with_valid_offsets(engine: WindowedQA) -> None:
    answers = engine.answer(QUESTIONS, [TEXT] * 3)
    assert len(answers) == 3
    for a in answers:
        assert_valid(a.answer, a.start, a.end, TEXT)
        assert a.answer  # the demo sentence always has a valid span
        assert 0.0 < a.score <= 1.0
        assert a.answer.strip() == a.answer  # offsets come from tokens, not whitespace


def test_long_context_over_512_tokens_is_read_in_windows(engine: WindowedQA) -> None:
    text = long_text()
    assert len(engine.tokenizer(text)["input_ids"]) > 512
    config = InferenceConfig(max_seq_length=128, doc_stride=32, max_answer_length=5)
    [answer] = engine.answer(["Where did the model live?"], [text], config)
    assert_valid(answer.answer, answer.start, answer.end, text)
    assert answer.answer
    assert len(engine.tokenizer(answer.answer, add_special_tokens=False)["input_ids"]) <= 5


def test_batch_results_equal_one_by_one(engine: WindowedQA) -> None:
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


def test_max_answer_length_bounds_the_answer(engine: WindowedQA) -> None:
    [answer] = engine.answer(["Where?"], [TEXT], InferenceConfig(max_answer_length=1))
    tokens = engine.tokenizer(answer.answer, add_special_tokens=False)["input_ids"]
    assert len(tokens) == 1


def test_int8_model_answers_validly(tiny_qa_model_dir: Path) -> None:
    import torch

    int8 = load_engine(
        tiny_qa_model_dir, tiny_qa_model_dir, InferenceConfig(quantize="dynamic-int8")
    )
    assert isinstance(int8, QAEngine)
    linear_types = {
        type(m).__module__ for m in int8.model.modules() if "Linear" in type(m).__name__
    }
    assert any("quantized" in t for t in linear_types), linear_types
    assert not any(type(m) is torch.nn.Linear for m in int8.model.modules())
    for a in int8.answer(QUESTIONS, [TEXT] * 3):
        assert_valid(a.answer, a.start, a.end, TEXT)


def test_onnxruntime_engine_gives_torchs_answers(
    tiny_qa_model_dir: Path, onnx_packages: dict[str, ModelPackage]
) -> None:
    texts = [TEXT, long_text(300), "Alex lives in Copenhagen."]
    questions = ["Where?", "Who lived in Copenhagen?", "Who?"]
    config = InferenceConfig(max_seq_length=96, doc_stride=24)
    reference = load_engine(tiny_qa_model_dir, tiny_qa_model_dir, config)
    onnx = load_package_engine(onnx_packages["none"], InferenceConfig(engine="onnxruntime"))
    for t, o in zip(
        reference.answer(questions, texts, config),
        onnx.answer(questions, texts, config),
        strict=True,
    ):
        assert (o.answer, o.start, o.end) == (t.answer, t.start, t.end)
        assert o.score == pytest.approx(t.score, rel=1e-3)


def test_onnxruntime_int8_graph_is_quantized_and_answers_validly(
    onnx_packages: dict[str, ModelPackage],
) -> None:
    import onnx

    fp32, int8 = (
        onnx_packages[q].path / "artifacts" / "onnx" / "model.onnx"
        for q in ("none", "dynamic-int8")
    )
    ops = {node.op_type for node in onnx.load(str(int8)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops, ops
    assert int8.stat().st_size < fp32.stat().st_size  # embeddings stay fp32 (most of a tiny model)
    engine = load_package_engine(onnx_packages["dynamic-int8"], ONNX_INT8)
    for a in engine.answer(QUESTIONS, [TEXT] * 3):
        assert_valid(a.answer, a.start, a.end, TEXT)
        assert a.answer


@pytest.mark.parametrize("engine_name", ["torch", "onnxruntime"])
def test_pyfunc_predict_and_params_override(
    engine_name: str, tiny_qa_package: ModelPackage, onnx_packages: dict[str, ModelPackage]
) -> None:
    package = onnx_packages["none"] if engine_name == "onnxruntime" else tiny_qa_package
    model = mlflow.pyfunc.load_model(str(package.path))
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


# The distributions an image without torch leaves out (torch's CUDA wheels and compiler too).
TORCH_ONLY = ("torch", "torchgen", "functorch", "triton", "nvidia")


def site_packages_without_torch(view: Path) -> Path:
    """A directory of links to this environment's packages, less torch's: on `python -S`'s
    path it stands in for the serving image without torch."""
    import sysconfig

    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        name = entry.name.split("-")[0].lower()
        if name in TORCH_ONLY or name.startswith("nvidia_") or entry.suffix == ".pth":
            continue
        (view / entry.name).symlink_to(entry)
    return view


@pytest.mark.parametrize("quantize", ["none", "dynamic-int8"])
def test_onnxruntime_package_serves_without_torch(
    quantize: str, onnx_packages: dict[str, ModelPackage], tmp_path: Path
) -> None:
    script = (
        "import json, sys, mlflow.pyfunc, pandas as pd\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "df = pd.DataFrame({'question': [sys.argv[2]], 'text': [sys.argv[3]]})\n"
        "rows = m.predict(df).to_dict(orient='records')\n"
        "assert 'torch' not in sys.modules\n"
        "print(json.dumps(rows))\n"
    )
    view = site_packages_without_torch(tmp_path / "site-packages")
    env = {**os.environ, "PYTHONPATH": f"{view}{os.pathsep}{OPERATOR_SRC}"}
    package = onnx_packages[quantize].path
    out = subprocess.run(
        [sys.executable, "-S", "-c", script, str(package), "Where do I live?", TEXT],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    [row] = json.loads(out.stdout.strip().splitlines()[-1])
    assert_valid(row["answer"], row["start"], row["end"], TEXT)
    no_torch = subprocess.run(
        [sys.executable, "-S", "-c", "import torch"], env=env, capture_output=True, check=False
    )
    assert no_torch.returncode != 0  # the view really has no torch


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
