"""Where the onnxruntime engine's time goes, against what this machine's matrix units can do.

    .venv/bin/python bench/engine_profile.py

For the bert-base-shaped model (random weights) and the graphs our packaging exports (fp32, and
int8 by ORT dynamic quantization), one batch of 16 paragraph windows (the paragraphs workload of
bench/qa_throughput.py) runs under ONNX Runtime's profiler. Node times are summed by operator
type; for the matrix products, the FLOPs follow from each node's input shapes (2 x M x K x N),
giving GFLOP/s achieved. Peaks are measured on the same machine, not taken from a datasheet:
fp32 as the best of a large sgemm (torch, MKL/oneDNN) and int8 as the best of a large
MatMulInteger under ONNX Runtime, both with all threads. The last line is one JSON object.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import onnxruntime as ort
import torch

from qa_operator.model.onnx_export import export_onnx
from qa_operator.model.tiny import build_tiny_qa_model
from qa_throughput import SIZES, make_inputs

MATMULS = (
    "MatMul",
    "FusedMatMul",
    "Gemm",
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QGemm",
)
PEAK_SIZE = 2048


def weight_shapes(graph: Path) -> dict[str, list[int]]:
    """Node name -> shape of its second input where that is a weight (an initializer): the
    profiler lists only the shapes of run-time inputs."""
    import onnx

    model = onnx.load(str(graph))
    initializers = {t.name: list(t.dims) for t in model.graph.initializer}
    return {
        node.name: initializers[node.input[1]]
        for node in model.graph.node
        if len(node.input) > 1 and node.input[1] in initializers
    }


def profile(graph: Path, feeds: dict[str, np.ndarray], rounds: int) -> dict[str, Any]:
    weights = weight_shapes(graph)
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(graph.with_suffix(""))
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)  # warm-up, excluded below
    walls = []
    for _ in range(rounds):
        started = time.perf_counter()
        session.run(None, feeds)
        walls.append(time.perf_counter() - started)
    trace = json.loads(Path(session.end_profiling()).read_text())
    runs = [e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"]
    first_measured = runs[1]["ts"] if len(runs) > 1 else 0
    by_type: dict[str, float] = defaultdict(float)
    matmul_flops = 0.0
    matmul_us = 0.0
    for event in trace:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["ts"] < first_measured:
            continue
        op = event["args"].get("op_name", "?")
        by_type[op] += event["dur"]
        if op in MATMULS:
            shapes = [next(iter(s.values())) for s in event["args"].get("input_type_shape", [])]
            node = event["name"].removesuffix("_kernel_time")
            a = shapes[0]
            b = weights.get(node) or shapes[1]
            matmul_flops += 2.0 * float(np.prod(a[:-1])) * a[-1] * b[-1]
            matmul_us += event["dur"]
    total_us = sum(by_type.values())
    return {
        "wall_s_best": round(min(walls), 3),
        "node_time_share": {
            op: round(us / total_us, 3)
            for op, us in sorted(by_type.items(), key=lambda kv: -kv[1])[:8]
        },
        "matmul_share": round(matmul_us / total_us, 3),
        "matmul_gflop_per_s": round(matmul_flops / (matmul_us / 1e6) / 1e9, 1),
        "batch_gflop": round(matmul_flops / rounds / 1e9, 1),
    }


def fp32_peak(rounds: int = 5) -> float:
    a = torch.randn(PEAK_SIZE, PEAK_SIZE)
    b = torch.randn(PEAK_SIZE, PEAK_SIZE)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(rounds))
    return 2 * PEAK_SIZE**3 / best / 1e9


def int8_peak(directory: Path, rounds: int = 5) -> float:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 127, (PEAK_SIZE, PEAK_SIZE), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])],
        "int8_peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [PEAK_SIZE, PEAK_SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [PEAK_SIZE, PEAK_SIZE])],
        [numpy_helper.from_array(weight, "w")],
    )
    path = directory / "int8_peak.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"a": rng.integers(0, 255, (PEAK_SIZE, PEAK_SIZE), dtype=np.uint8)}
    session.run(None, feeds)
    best = min(_timed(lambda: session.run(None, feeds)) for _ in range(rounds))
    return 2 * PEAK_SIZE**3 / best / 1e9


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main() -> int:
    rounds = 3
    tokenizer, model = build_tiny_qa_model(0, **SIZES["bert-base"])
    questions, texts = make_inputs(16, workload="paragraphs")
    encoded = tokenizer(questions, texts, padding=True, return_tensors="np")
    feeds = {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}
    padded = int(feeds["input_ids"].shape[1])
    result: dict[str, Any] = {"batch": {"windows": 16, "padded_length": padded}}
    with tempfile.TemporaryDirectory(prefix="qa-profile-") as scratch:
        root = Path(scratch)
        tokenizer.save_pretrained(str(root / "model"))
        model.save_pretrained(str(root / "model"))
        for quantize, name in (("none", "fp32"), ("dynamic-int8", "int8")):
            graph = export_onnx(root / "model", root / "model", root / name, quantize)
            result[name] = profile(graph, feeds, rounds)
            print(f"{name}: {json.dumps(result[name])}", file=sys.stderr, flush=True)
        result["measured_peak_gflop_per_s"] = {
            "fp32_sgemm_2048": round(fp32_peak(), 1),
            "int8_matmulinteger_2048": round(int8_peak(root), 1),
        }
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
