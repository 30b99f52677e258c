"""Batched extractive QA over a HuggingFace encoder, on torch or ONNX Runtime.

What the original blog post did wrong and this does right: the tokenizer is an attribute (no
global), long texts are read in overlapping windows instead of crashing past 512 tokens, the
answer is the best *valid* span (never an end before its start), rows are batched by length and
run under `torch.inference_mode()`.

Tokenization, windows, batches and span selection are one code path (`WindowedQA`); an engine
only turns a padded batch into start and end logits. torch and onnxruntime are each imported
only by their own engine, so an image with one of them serves that engine's packages.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from transformers import AutoTokenizer

from qa_operator.model.batching import length_batches
from qa_operator.model.config import InferenceConfig
from qa_operator.model.limits import RequestCancelled, request_cancelled
from qa_operator.model.spans import NO_SPAN, Span, Window, best_span

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    answer: str
    score: float
    start: int
    end: int


def load_engine(
    model_dir: Path,
    tokenizer_dir: Path,
    config: InferenceConfig,
    onnx_dir: Path | None = None,
) -> WindowedQA:
    """Load tokenizer and model from their own directories and prepare them for inference: the
    torch model in `model_dir`, or with `engine: onnxruntime` the graph in `onnx_dir`."""
    config.validate()
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if config.engine == "onnxruntime":
        from qa_operator.model.onnx_export import ONNX_FILE, session

        if onnx_dir is None or not (onnx_dir / ONNX_FILE).is_file():
            raise ValueError(
                "engine onnxruntime needs the package's ONNX graph (artifacts/onnx/"
                f"{ONNX_FILE}); this package has none: package the model again"
            )
        log.info("QA model runs on ONNX Runtime, CPU (quantize: %s)", config.quantize)
        return OnnxQAEngine(tokenizer, session(onnx_dir / ONNX_FILE, config.num_threads), config)
    import torch
    from transformers import AutoModelForQuestionAnswering

    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    model = AutoModelForQuestionAnswering.from_pretrained(str(model_dir))
    device = inference_device(config.quantize, torch.cuda.is_available())
    log.info("QA model runs on %s (quantize: %s)", device, config.quantize)
    model.to(device)
    model = prepare_model(model, config.quantize, onednn=device == "cpu")
    return QAEngine(tokenizer, model, config)


def inference_device(quantize: str, cuda_available: bool) -> str:
    """A CUDA GPU when torch sees one (the serving image's CUDA variant on a GPU instance),
    except with dynamic int8, which PyTorch runs on CPU only."""
    return "cuda" if cuda_available and quantize != "dynamic-int8" else "cpu"


def prepare_model(model: Any, quantize: str, *, onednn: bool = True) -> Any:
    """Put the model in eval mode; with "dynamic-int8", quantize its Linear layers to int8,
    otherwise (fp32) move them onto oneDNN kernels in place unless `onednn` is False."""
    import torch

    from qa_operator.model.kernels import use_onednn_linears

    model.eval()
    if quantize == "dynamic-int8":
        from torch.ao.quantization import quantize_dynamic

        model = quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    elif onednn:
        use_onednn_linears(model)
    return model


class WindowedQA:
    """Answers (question, text) pairs with one tokenizer and an engine's `_logits`."""

    def __init__(self, tokenizer: Any, config: InferenceConfig) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("a fast tokenizer is needed (it provides character offsets)")
        self.tokenizer = tokenizer
        self.config = config

    def _logits(self, features: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) logits, float32 [windows, longest window], of one batch of windows."""
        raise NotImplementedError

    def answer(
        self,
        questions: Sequence[str],
        texts: Sequence[str],
        config: InferenceConfig | None = None,
    ) -> list[Answer]:
        cfg = (config or self.config).validate()
        if len(questions) != len(texts):
            raise ValueError("questions and texts must have the same length")
        if not questions:
            return []
        encoded = self.tokenizer(
            list(questions),
            list(texts),
            truncation="only_second",
            max_length=cfg.max_seq_length,
            stride=cfg.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        row_of_window: list[int] = list(encoded["overflow_to_sample_mapping"])
        n_windows = len(row_of_window)
        starts: list[np.ndarray] = [np.empty(0)] * n_windows
        ends: list[np.ndarray] = [np.empty(0)] * n_windows
        lengths = [len(ids) for ids in encoded["input_ids"]]
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
        batches = length_batches(lengths, cfg.batch_size)
        for done, batch_ids in enumerate(batches):
            if request_cancelled():
                log.warning(
                    "request abandoned (client gone) after %d of %d batches (%d windows)",
                    done,
                    len(batches),
                    n_windows,
                )
                raise RequestCancelled(f"abandoned after {done} of {len(batches)} batches")
            features = [{k: encoded[k][i] for k in keys} for i in batch_ids]
            start_logits, end_logits = self._logits(features)
            for row, i in enumerate(batch_ids):
                starts[i] = start_logits[row, : lengths[i]]
                ends[i] = end_logits[row, : lengths[i]]
        windows_by_row: list[list[Window]] = [[] for _ in questions]
        for i, row in enumerate(row_of_window):
            windows_by_row[row].append(
                Window(
                    start_logits=starts[i],
                    end_logits=ends[i],
                    offsets=encoded["offset_mapping"][i],
                    sequence_ids=encoded.sequence_ids(i),
                )
            )
        answers = []
        for text, windows in zip(texts, windows_by_row, strict=True):
            span = best_span(windows, cfg.max_answer_length) if windows else NO_SPAN
            answers.append(_to_answer(text, span))
        return answers


class QAEngine(WindowedQA):
    """The torch engine: one (possibly quantized) HuggingFace model, the reference."""

    def __init__(self, tokenizer: Any, model: Any, config: InferenceConfig) -> None:
        super().__init__(tokenizer, config)
        self.model = model
        first_parameter = next(iter(model.parameters()), None)
        self.device = first_parameter.device if first_parameter is not None else "cpu"

    def _logits(self, features: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        with torch.inference_mode():
            batch = self.tokenizer.pad(features, return_tensors="pt").to(self.device)
            output = self.model(**batch)
            return (
                output.start_logits.float().cpu().numpy(),
                output.end_logits.float().cpu().numpy(),
            )


class OnnxQAEngine(WindowedQA):
    """The ONNX Runtime engine: the graph exported from the torch model at package time."""

    def __init__(self, tokenizer: Any, session: Any, config: InferenceConfig) -> None:
        super().__init__(tokenizer, config)
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]

    def _logits(self, features: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        batch = self.tokenizer.pad(features, return_tensors="np")
        feeds = {name: np.asarray(batch[name], dtype=np.int64) for name in self.input_names}
        start, end = self.session.run(["start_logits", "end_logits"], feeds)
        return start, end


def _to_answer(text: str, span: Span) -> Answer:
    return Answer(
        answer=text[span.start : span.end], score=span.score, start=span.start, end=span.end
    )
