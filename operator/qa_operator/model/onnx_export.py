"""The ONNX Runtime engine's graph, made when the model is packaged (torch, onnx and onnxruntime
live here; the serving side needs only onnxruntime).

The HuggingFace model is traced to ONNX (fp32), its BERT-family subgraphs are fused into ONNX
Runtime's transformer kernels where the optimizer recognises them (attention masks, bias+GELU,
residual+LayerNorm), and, for "dynamic-int8", its MatMul weights are quantized to int8 by ONNX
Runtime's dynamic quantization. Each graph is checked against the torch model's logits on probe
windows before it goes into the package: a graph that does not reproduce them fails the package
with `ExportMismatch` (a fused graph that does not is dropped for the plain one first).
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


def export_onnx(
    model_dir: Path, tokenizer_dir: Path, dest_dir: Path, quantize: str, *, fuse: bool = True
) -> Path:
    """Write the checked ONNX graph of the QA model in `model_dir` to `dest_dir/model.onnx`
    (int8 when `quantize` is "dynamic-int8"); raise ExportMismatch if it is off."""
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
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
        if fuse:
            fused = Path(scratch) / "fused.onnx"
            if _fuse(plain, fused, model.config) and _matches(fused, probe, expected, "fused"):
                fp32 = fused
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


def _matches(
    graph: Path, probe: dict[str, np.ndarray], expected: Sequence[np.ndarray], what: str
) -> bool:
    try:
        check_logits(graph, probe, expected, FP32_TOLERANCE)
    except ExportMismatch as error:
        log.warning("the %s ONNX graph is not used: %s", what, error)
        return False
    return True


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


def _fuse(plain: Path, fused: Path, config: Any) -> bool:
    """ONNX Runtime's transformer fusions for BERT-family encoders; False if none applied."""
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        optimized = optimize_model(
            str(plain),
            model_type="bert",
            num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
            hidden_size=int(getattr(config, "hidden_size", 0) or 0),
            opt_level=0,
        )
    except Exception as error:  # the optimizer is best effort: the plain graph stays
        log.warning("ONNX Runtime's transformer fusions failed (%s); using the plain graph", error)
        return False
    fusions = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    if not fusions:
        return False
    log.info("ONNX Runtime fusions: %s", fusions)
    optimized.save_model_to_file(str(fused))
    return True


def _quantize_int8(source: Path, target: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        # Fused ops (com.microsoft domain) have no inferred output type; they are float.
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
