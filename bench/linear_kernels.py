"""fp32 Linear layers on CPU: PyTorch's stock kernel (MKL sgemm) against oneDNN with a packed
weight (qa_operator.model.kernels.OneDnnLinear).

    .venv/bin/python bench/linear_kernels.py

Two parts. feed_forward: GFLOP/s of bert-base's 768 -> 3072 product for a number of rows (tokens
in the batch: a 30-token sentence, a ~200-token paragraph, a 384-token window, a batch of
windows). small_layers: microseconds per call at 30 rows for layer shapes from tiny to bert-base,
which shows where oneDNN's extra per-call cost stops paying (kernels.MIN_WEIGHTS). The last line
is one JSON object {"feed_forward": {...}, "small_layers": {...}, "machine": {...}}. Each figure
is the best of interleaved rounds.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

import torch
from torch import nn

from qa_operator.model.kernels import OneDnnLinear

HIDDEN, INTERMEDIATE = 768, 3072
ROWS = (30, 200, 384, 1536)
SMALL_SHAPES = ((32, 64), (64, 256), (128, 512), (256, 1024), (768, 768))


def best_seconds(runs: dict[str, nn.Module], x: torch.Tensor, rounds: int) -> dict[str, float]:
    best = dict.fromkeys(runs, float("inf"))
    with torch.inference_mode():
        for layer in runs.values():
            layer(x)
        for _ in range(rounds):
            for name, layer in runs.items():
                started = time.perf_counter()
                layer(x)
                best[name] = min(best[name], time.perf_counter() - started)
    return best


def both_kernels(in_features: int, out_features: int) -> dict[str, nn.Module]:
    stock = nn.Linear(in_features, out_features).eval()
    return {"stock": stock, "onednn": OneDnnLinear(stock)}


def feed_forward() -> dict[str, dict[str, float]]:
    runs = both_kernels(HIDDEN, INTERMEDIATE)
    result = {}
    for rows in ROWS:
        seconds = best_seconds(runs, torch.randn(rows, HIDDEN), rounds=20)
        flops = 2 * rows * HIDDEN * INTERMEDIATE
        gflops = {name: flops / s / 1e9 for name, s in seconds.items()}
        result[f"{rows}_rows"] = {
            "stock_gflops": round(gflops["stock"]),
            "onednn_gflops": round(gflops["onednn"]),
            "ratio": round(gflops["onednn"] / gflops["stock"], 2),
        }
        print(f"feed_forward {rows} rows: {json.dumps(result[f'{rows}_rows'])}", file=sys.stderr)
    return result


def small_layers(rows: int = 30) -> dict[str, dict[str, float]]:
    result = {}
    for in_features, out_features in SMALL_SHAPES:
        runs = both_kernels(in_features, out_features)
        seconds = best_seconds(runs, torch.randn(rows, in_features), rounds=200)
        key = f"{in_features}x{out_features}"
        result[key] = {
            "stock_us": round(seconds["stock"] * 1e6, 1),
            "onednn_us": round(seconds["onednn"] * 1e6, 1),
            "ratio": round(seconds["stock"] / seconds["onednn"], 2),
        }
        print(f"small_layers {key}: {json.dumps(result[key])}", file=sys.stderr)
    return result


def main() -> int:
    torch.manual_seed(0)
    result: dict[str, object] = {"feed_forward": feed_forward(), "small_layers": small_layers()}
    result["machine"] = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
