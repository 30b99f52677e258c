"""Throughput of the QA model on CPU: the original blog post's method against ours.

    make bench            # or: .venv/bin/python bench/qa_throughput.py [--quick]

On the same inputs, in one run, for a tiny model and a bert-base-sized model (hidden 768, 12
layers; random weights, nothing downloaded):

* row_loop: the post's predict, reimplemented for comparison: one row at a time, autograd on,
  start and end argmax-ed independently (end may precede start), texts truncated at 512 tokens;
* fp32: ours (QAEngine): overlapping windows, padding-aware length batches, inference mode,
  Linear layers on oneDNN with packed weights (model/kernels.py);
* fp32_stock_linear: the same with PyTorch's stock Linear kernels, to show what the batching and
  what the kernels each bring;
* int8: ours with dynamic int8 quantization of the Linear layers;
* onnxruntime_fp32, onnxruntime_int8: ours with `engine: onnxruntime` as served: a model package
  built by `build_package` (graph exported with eager attention, checked against torch; int8
  by ORT dynamic quantization), loaded with `mlflow.pyfunc.load_model` and asked through its
  `predict` on a DataFrame, which is what the serving image's /invocations calls;
* ort_peer_fp32, ort_peer_int8: ONNX Runtime as a user would run it, the benchmark peer: the
  model exported with torch.onnx.export's defaults, ORT's quantize_dynamic defaults for int8, a
  default session, under the same tokenization, length batches and span selection as ours.

Answers are checked against the peer of the same precision (`answers_equal_to_peer`: the share
of rows with the same span). Each method runs once per round, rounds interleaved (default 9), so
load from other processes falls on every method alike. `vs_ort_peer` gives each of ours against
that peer as the ratio of best rounds (peer's best time / ours; >= 1 means ours is at least as
fast), and `vs_ort_peer_paired` as the median of per-round ratios; `targets` says, for each
precision, whether the fastest of ours reaches the peer on both measures.

The last line of output is one JSON object: {"<size>": {"model", "rows_per_s",
"speedup_vs_row_loop", "vs_ort_peer", "answers_equal_to_peer", "targets", ...}, ...}:
rows_per_s from each method's best round, speedups and ratios as the median of per-round ratios.
Timings depend on the machine and its load; see docs/model.md.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

import pandas as pd
import torch

from qa_operator.model.config import InferenceConfig, Quantize
from qa_operator.model.inference import OnnxQAEngine, QAEngine, WindowedQA, prepare_model
from qa_operator.model.packaging import build_package
from qa_operator.model.tiny import WORDS, build_tiny_qa_model

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64},
    "bert-base": {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "intermediate_size": 3072},
}
# Our onnxruntime engine in each precision, as served (a model package loaded through MLflow).
SERVED: tuple[tuple[str, Quantize], ...] = (
    ("onnxruntime_fp32", "none"),
    ("onnxruntime_int8", "dynamic-int8"),
)
QUESTIONS = ("What is my name?", "How old am I?", "Where do I live?", "Who works there?")


WORKLOADS = {
    # Paragraph-like texts, all under 512 tokens, so the row loop (which cannot read longer
    # texts) does the same work as ours.
    "paragraphs": (40, 300),
    # The post's own kind of input: a sentence or two ("My name is Alex, I am 32 and ...").
    "sentences": (8, 30),
}


def make_inputs(
    rows: int, seed: int = 0, workload: str = "paragraphs"
) -> tuple[list[str], list[str]]:
    low, high = WORKLOADS[workload]
    rng = random.Random(seed)
    questions, texts = [], []
    for _ in range(rows):
        words = [rng.choice(WORDS) for _ in range(rng.randint(low, high))]
        sentences = [
            " ".join(words[i : i + 12]).capitalize() + "." for i in range(0, len(words), 12)
        ]
        texts.append(" ".join(sentences))
        questions.append(rng.choice(QUESTIONS))
    return questions, texts


def row_loop(tokenizer: Any, model: Any, questions: list[str], texts: list[str]) -> int:
    """The post's method; returns how many answers had their end before their start."""
    invalid = 0
    for question, text in zip(questions, texts, strict=True):
        inputs = tokenizer(question, text, return_tensors="pt", truncation=True, max_length=512)
        outputs = model(**inputs)  # autograd on, as in the post
        start = int(torch.argmax(outputs.start_logits))
        end = int(torch.argmax(outputs.end_logits)) + 1
        tokens = tokenizer.convert_ids_to_tokens(inputs["input_ids"][0][start:end])
        _ = tokenizer.convert_tokens_to_string(tokens)
        invalid += end <= start
    return invalid


def ort_peer_graphs(model: Any, tokenizer: Any, directory: Path) -> tuple[Path, Path]:
    """The peer's (fp32, int8) graphs: torch.onnx.export and quantize_dynamic, defaults."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = ["input_ids", "attention_mask", "token_type_ids"]
    example = tokenizer(["Who?"], ["Alex lives in Copenhagen."], return_tensors="pt")

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.model(**dict(zip(names, inputs, strict=True)))
            return out.start_logits, out.end_logits

    fp32, int8 = directory / "peer-fp32.onnx", directory / "peer-int8.onnx"
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        Logits().eval(),
        tuple(example[n] for n in names),
        str(fp32),
        input_names=names,
        output_names=["start_logits", "end_logits"],
        dynamic_axes={n: axes for n in (*names, "start_logits", "end_logits")},
        dynamo=False,
    )
    model.eval()
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
    return fp32, int8


def spans(engine: WindowedQA, questions: list[str], texts: list[str]) -> list[tuple[int, int]]:
    return [(a.start, a.end) for a in engine.answer(questions, texts)]


def timed_interleaved(runs: dict[str, Any], repeats: int) -> dict[str, list[float]]:
    """Wall times of each run in each of `repeats` rounds; every round runs each method once,
    so load from other processes on a shared machine falls on all methods alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    return times


def paired_speedup(baseline: list[float], method: list[float]) -> float:
    """Median over rounds of baseline time / method time within the same round: a round slowed
    by other load slows both, so pairing cancels most of it."""
    return statistics.median(b / m for b, m in zip(baseline, method, strict=True))


def bench_size(
    name: str,
    rows: int,
    repeats: int,
    batch_size: int,
    max_seq_length: int = 512,
    workload: str = "paragraphs",
) -> dict[str, Any]:
    tokenizer, model = build_tiny_qa_model(0, **SIZES[name])
    params = sum(p.numel() for p in model.parameters())
    questions, texts = make_inputs(rows, workload=workload)
    tokens = [len(tokenizer(q, t)["input_ids"]) for q, t in zip(questions, texts, strict=True)]
    # The row loop reads each text in one 512-token window; ours uses the same window so that
    # both do the same work (at 384 ours would split the longer texts into two windows).
    config = InferenceConfig(batch_size=batch_size, max_seq_length=max_seq_length)
    scratch = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    tokenizer.save_pretrained(str(scratch / "model"))
    model.save_pretrained(str(scratch / "model"))
    packages = {
        method: served_package(scratch / "model", scratch / quantize, config, quantize)
        for method, quantize in SERVED
    }
    peer_fp32, peer_int8 = ort_peer_graphs(copy.deepcopy(model), tokenizer, scratch)
    engines: dict[str, WindowedQA] = {
        "fp32": QAEngine(tokenizer, prepare_model(copy.deepcopy(model), "none"), config),
        "fp32_stock_linear": QAEngine(
            tokenizer, prepare_model(copy.deepcopy(model), "none", onednn=False), config
        ),
        "int8": QAEngine(tokenizer, prepare_model(copy.deepcopy(model), "dynamic-int8"), config),
        "ort_peer_fp32": OnnxQAEngine(tokenizer, _default_session(peer_fp32), config),
        "ort_peer_int8": OnnxQAEngine(tokenizer, _default_session(peer_int8), config),
    }
    frame = pd.DataFrame({"question": questions, "text": texts})
    row_loop(tokenizer, model, questions[:2], texts[:2])
    answers = {name: spans(engine, questions, texts) for name, engine in engines.items()}
    for method, package in packages.items():
        answers[method] = package_spans(package.predict(frame))

    invalid: list[int] = []
    runs: dict[str, Any] = {
        "row_loop": lambda: invalid.append(row_loop(tokenizer, model, questions, texts))
    }
    for method, engine in engines.items():
        runs[method] = lambda engine=engine: engine.answer(questions, texts)
    for method, package in packages.items():
        runs[method] = lambda package=package: package.predict(frame)
    seconds = timed_interleaved(runs, repeats)
    shutil.rmtree(scratch)  # the sessions hold their graphs
    rows_per_s = {k: round(rows / min(v), 2) for k, v in seconds.items()}
    peer_of = {
        "fp32": "ort_peer_fp32",
        "onnxruntime_fp32": "ort_peer_fp32",
        "int8": "ort_peer_int8",
        "onnxruntime_int8": "ort_peer_int8",
    }
    vs_peer = {
        ours: round(min(seconds[peer]) / min(seconds[ours]), 3) for ours, peer in peer_of.items()
    }
    vs_peer_paired = {
        ours: round(paired_speedup(seconds[peer], seconds[ours]), 3)
        for ours, peer in peer_of.items()
    }
    equal = {
        ours: round(
            sum(a == b for a, b in zip(answers[ours], answers[peer], strict=True)) / rows, 3
        )
        for ours, peer in peer_of.items()
    }
    return {
        "model": {
            "name": name,
            "workload": workload,
            **SIZES[name],
            "parameters": params,
            "rows": rows,
            "tokens_per_row": {
                "min": min(tokens),
                "mean": round(sum(tokens) / rows),
                "max": max(tokens),
            },
            "batch_size": batch_size,
            "max_seq_length": max_seq_length,
            "repeats": repeats,
        },
        "rows_per_s": rows_per_s,
        "speedup_vs_row_loop": {
            k: round(paired_speedup(seconds["row_loop"], v), 2)
            for k, v in seconds.items()
            if k != "row_loop"
        },
        "vs_ort_peer": vs_peer,
        "vs_ort_peer_paired": vs_peer_paired,
        "answers_equal_to_peer": equal,
        "targets": {
            f"{precision}_at_least_ort_{precision}": any(
                min(vs_peer[ours], vs_peer_paired[ours]) >= 1
                for ours in (precision, f"onnxruntime_{precision}")
            )
            for precision in ("fp32", "int8")
        },
        "row_loop_end_before_start": invalid[0],
    }


def served_package(model_dir: Path, dest: Path, config: InferenceConfig, quantize: Quantize) -> Any:
    """Our onnxruntime engine as the serving image runs it: a package built by the operator's
    packaging, loaded through MLflow (the pyfunc whose predict /invocations calls)."""
    import mlflow.pyfunc

    served = dataclasses.replace(config, engine="onnxruntime", quantize=quantize)
    return mlflow.pyfunc.load_model(str(build_package(model_dir, dest, served).path))


def package_spans(frame: pd.DataFrame) -> list[tuple[int, int]]:
    return [(int(s), int(e)) for s, e in zip(frame["start"], frame["end"], strict=True)]


def _default_session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _onnxruntime_version() -> str:
    import onnxruntime as ort

    return str(ort.__version__)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rows, one repeat (smoke test)")
    parser.add_argument("--rows-tiny", type=int, default=256)
    parser.add_argument("--rows-base", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows_tiny, args.rows_base, args.repeats = 32, 4, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    result: dict[str, Any] = {}
    runs = (
        ("tiny", "tiny", args.rows_tiny, "paragraphs"),
        ("bert-base", "bert-base", args.rows_base, "paragraphs"),
        ("bert-base/sentences", "bert-base", args.rows_base * 4, "sentences"),
    )
    for key, size, rows, workload in runs:
        result[key] = bench_size(size, rows, args.repeats, args.batch_size, workload=workload)
        print(f"{key}: {json.dumps(result[key])}", file=sys.stderr, flush=True)
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "onnxruntime": _onnxruntime_version(),
        "python": platform.python_version(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
