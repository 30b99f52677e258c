"""The ONNX Runtime engine's graph, made when the model is packaged (torch, onnx and onnxruntime
live here; the serving side needs only onnxruntime).

The HuggingFace model is traced to ONNX (fp32) with its eager attention (plain MatMul, Softmax),
not the SDPA attention transformers picks by default: with it the packaged graph ran 1.03-1.11x
as fast as ORT's defaults in fp32 and 1.06-1.30x in int8 on this project's bench, where the SDPA
export had run 0.86-0.98x (bench/qa_throughput.py, docs/model.md). For "dynamic-int8", ONNX
Runtime's dynamic quantization turns the MatMuls with weights into int8 ones; the attention's two
MatMuls of activations stay fp32 (quantizing them costs a quantization of both inputs per call,
for no measured gain). Fusions are left to the serving session (ORT_ENABLE_ALL): ONNX Runtime's
offline transformer optimizer made these graphs slower here. Each graph is checked against the
torch model's logits on probe windows before it goes into the package: one that does not
reproduce them fails the package with `ExportMismatch`.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
OUTPUTS = ("start_logits", "end_logits")
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
# fp32: the graph computes what torch computes, in another order; differences are float rounding.
FP32_TOLERANCE = 1e-3
# int8 changes the logits themselves. Its check catches a broken graph (wrong weights, wrong
# layer), not the quantization error: on every model we measured, int8 logits stay within a
# tenth of the logits' range of the fp32 ones (bench/qa_throughput.py checks the answers too).
INT8_TOLERANCE = 0.25

PROBE_QUESTIONS = ("What is my name?", "Where do I live?", "Who?")
PROBE_TEXTS = (
    "My name is Alex, I am 32 and live in Copenhagen.",
    "Once upon a time there was a model that lived in Copenhagen with Alex. " * 6,
    "Alex.",
)


class ExportMismatch(ValueError):
    """The exported graph does not reproduce the torch model's logits."""


@dataclass(frozen=True)
class LogitsCheck:
    """How far a graph's logits are from torch's over the probe windows' real tokens, relative
    to the largest torch logit."""

    max_abs_diff: float
    scale: float

    @property
    def relative(self) -> float:
        return self.max_abs_diff / self.scale


def export_onnx(model_dir: Path, tokenizer_dir: Path, dest_dir: Path, quantize: str) -> Path:
    """Write the checked ONNX graph of the QA model in `model_dir` to `dest_dir/model.onnx`
    (int8 when `quantize` is "dynamic-int8"); raise ExportMismatch if it is off."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(
        str(model_dir), attn_implementation="eager"
    )
    model.eval()
    probe = probe_inputs(tokenizer)
    names = [n for n in MODEL_INPUTS if n in probe]
    with torch.inference_mode():
        reference = model(**{n: torch.from_numpy(probe[n]) for n in names})
        expected = (reference.start_logits.numpy(), reference.end_logits.numpy())
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / ONNX_FILE
    with tempfile.TemporaryDirectory(prefix="qa-onnx-") as scratch:
        plain = Path(scratch) / "plain.onnx"
        _trace(model, names, probe, plain)
        fp32 = plain
        checked = check_logits(fp32, probe, expected, FP32_TOLERANCE)
        log.info("ONNX fp32 graph within %.2g of torch's logits", checked.relative)
        if quantize == "dynamic-int8":
            _quantize_int8(fp32, target)
            checked = check_logits(target, probe, expected, INT8_TOLERANCE)
            log.info("ONNX int8 graph within %.2g of torch's fp32 logits", checked.relative)
        else:
            fp32.replace(target)
    return target


def probe_inputs(tokenizer: Any) -> dict[str, np.ndarray]:
    """A padded batch of probe windows of different lengths (so padding is exercised)."""
    encoded = tokenizer(
        list(PROBE_QUESTIONS), list(PROBE_TEXTS), truncation="only_second", max_length=128,
        padding=True, return_tensors="np",
    )  # fmt: skip
    return {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items() if k in MODEL_INPUTS}


def session(path: Path, num_threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session for the graph at `path`."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def check_logits(
    graph: Path, probe: dict[str, np.ndarray], expected: Sequence[np.ndarray], tolerance: float
) -> LogitsCheck:
    """Run the graph on the probe batch and compare its logits with `expected` on the real
    (unpadded) tokens; raise ExportMismatch when they differ by more than `tolerance` of the
    largest expected logit."""
    runner = session(graph)
    feeds = {i.name: probe[i.name] for i in runner.get_inputs()}
    actual = runner.run(list(OUTPUTS), feeds)
    real = probe["attention_mask"].astype(bool)
    scale = max(float(np.abs(e[real]).max()) for e in expected) or 1.0
    diff = max(
        float(np.abs(a[real] - e[real]).max()) for a, e in zip(actual, expected, strict=True)
    )
    result = LogitsCheck(max_abs_diff=diff, scale=scale)
    if result.relative > tolerance:
        raise ExportMismatch(
            f"the ONNX graph's logits differ from the torch model's by {diff:.4g} "
            f"({result.relative:.2%} of the largest logit, {scale:.4g}; allowed "
            f"{tolerance:.2%}): this model cannot be served by the onnxruntime engine "
            "(use engine: torch)"
        )
    return result


def _logits_only(model: Any, names: Sequence[str]) -> Any:
    """The model as a module of positional inputs returning (start_logits, end_logits)."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            output = self.model(**dict(zip(names, inputs, strict=True)))
            return output.start_logits, output.end_logits

    return LogitsOnly().eval()


def _trace(model: Any, names: Sequence[str], probe: dict[str, np.ndarray], path: Path) -> None:
    import torch

    axes = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings(), torch.inference_mode():
        # The tracer warns about Python branches on shapes; the probe check below is the test.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _logits_only(model, names),
            tuple(torch.from_numpy(probe[n]) for n in names),
            str(path),
            input_names=list(names),
            output_names=list(OUTPUTS),
            dynamic_axes={name: axes for name in (*names, *OUTPUTS)},
            opset_version=OPSET,
            dynamo=False,
        )
    model.eval()


def _quantize_int8(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        extra_options={
            "MatMulConstBOnly": True,  # weights only: attention's activation MatMuls stay fp32
            # Ops without an inferred output type (none expected in a traced graph) are float.
            "DefaultTensorType": onnx.TensorProto.FLOAT,
        },
    )
