"""Inference settings for the QA model (pure: no torch, transformers or mlflow)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, cast

Quantize = Literal["none", "dynamic-int8"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "dynamic-int8")
# torch runs the HuggingFace weights (the reference); onnxruntime runs an ONNX graph exported from
# them when the model is packaged (model/onnx_export.py), and needs no torch to serve.
Engine = Literal["torch", "onnxruntime"]
ENGINES: tuple[str, ...] = ("torch", "onnxruntime")
DEFAULT_ENGINE: Engine = "torch"

# Settings a request may override (MLflow params); quantization and threads are fixed at load.
REQUEST_PARAMS: tuple[str, ...] = (
    "max_answer_length",
    "max_seq_length",
    "doc_stride",
    "batch_size",
)

# BERT-style encoders have 512 position embeddings; a window can never be longer.
MAX_POSITIONS = 512


@dataclass(frozen=True)
class InferenceConfig:
    """How the model reads long texts and how it runs.

    `max_seq_length` is the window size in tokens (question + context + special tokens) and
    `doc_stride` the overlap between consecutive windows of one long context.
    """

    max_answer_length: int = 30
    max_seq_length: int = 384
    doc_stride: int = 128
    batch_size: int = 16
    quantize: Quantize = "none"
    num_threads: int | None = None
    engine: Engine = DEFAULT_ENGINE

    def validate(self) -> InferenceConfig:
        """Raise ValueError naming the first bad setting; return self so calls can chain."""
        for name in ("max_answer_length", "max_seq_length", "doc_stride", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if not 1 <= self.max_answer_length <= MAX_POSITIONS:
            raise ValueError(
                f"max_answer_length must be between 1 and {MAX_POSITIONS} tokens, "
                f"got {self.max_answer_length}"
            )
        if not 32 <= self.max_seq_length <= MAX_POSITIONS:
            raise ValueError(
                f"max_seq_length must be between 32 and {MAX_POSITIONS} tokens, "
                f"got {self.max_seq_length}"
            )
        if not 0 <= self.doc_stride < self.max_seq_length:
            raise ValueError(
                f"doc_stride must be >= 0 and smaller than max_seq_length "
                f"({self.max_seq_length}), got {self.doc_stride}"
            )
        if not 1 <= self.batch_size <= 1024:
            raise ValueError(f"batch_size must be between 1 and 1024, got {self.batch_size}")
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(
                f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}"
            )
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.num_threads is not None and (
            isinstance(self.num_threads, bool)
            or not isinstance(self.num_threads, int)
            or self.num_threads < 1
        ):
            raise ValueError(
                f"num_threads must be a positive integer or unset, got {self.num_threads!r}"
            )
        return self

    def __repr__(self) -> str:
        # The operator keys packages on this repr (desired.source_key): the default engine is
        # left out so that existing resources keep their key.
        shown = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"InferenceConfig({shown})"

    def to_dict(self) -> dict[str, Any]:
        """The settings as a mapping; the default engine is left out, so that a torch package
        keeps the digest it had before engines existed."""
        data = asdict(self)
        if data["engine"] == DEFAULT_ENGINE:
            del data["engine"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InferenceConfig:
        """Build from a mapping (e.g. MLflow's model_config); unknown keys are an error, missing
        keys take defaults, None means "default" too, and the result is validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown inference setting(s): {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = {k: v for k, v in data.items() if v is not None or k == "num_threads"}
        if "quantize" in values:
            values["quantize"] = cast(Quantize, values["quantize"])
        if "engine" in values:
            values["engine"] = cast(Engine, values["engine"])
        return cls(**values).validate()

    def merged(self, overrides: dict[str, Any] | None) -> InferenceConfig:
        """This config with per-request overrides applied (None values are ignored)."""
        if not overrides:
            return self
        data = self.to_dict()
        data.update({k: v for k, v in overrides.items() if v is not None})
        return InferenceConfig.from_dict(data)
