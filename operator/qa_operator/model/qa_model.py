"""The MLflow pyfunc QA model, saved with MLflow's models-from-code.

`build_package` hands this file's path to `mlflow.pyfunc.save_model(python_model=...)`; MLflow
copies it into the package and runs it on load, so nothing is pickled. The tokenizer and the
model weights are artifacts ("tokenizer", "model"; "onnx" holds the onnxruntime engine's graph),
the inference settings (and any non-default serving limits) are `model_config`, and each request
may override the per-request settings through MLflow `params`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from qa_operator.model.config import REQUEST_PARAMS
from qa_operator.model.inputs import questions_and_texts
from qa_operator.model.limits import TokenCounts, from_model_config


class QAModel(PythonModel):
    """Answers each row's `question` from its `text` (alias `context`) with an exact substring."""

    def __init__(self) -> None:
        self._engine: Any = None

    def load_context(self, context: PythonModelContext) -> None:
        from qa_operator.model.inference import load_engine

        config, _ = from_model_config(dict(context.model_config or {}))
        artifacts = context.artifacts
        model_dir = Path(artifacts["model"])
        tokenizer_dir = Path(artifacts.get("tokenizer", artifacts["model"]))
        onnx_dir = Path(artifacts["onnx"]) if "onnx" in artifacts else None
        self._engine = load_engine(model_dir, tokenizer_dir, config, onnx_dir)

    def token_counts(self) -> TokenCounts:
        """The tokenizer's exact question lengths, for the serving layer's windows check."""
        if self._engine is None:
            raise RuntimeError("the model is not loaded: load it with mlflow.pyfunc.load_model")
        tokenizer = self._engine.tokenizer

        def questions(texts: Sequence[str]) -> list[int]:
            encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
            return [len(ids) for ids in encoded]

        return TokenCounts(questions, int(tokenizer.num_special_tokens_to_add(pair=True)))

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        if self._engine is None:
            raise RuntimeError("the model is not loaded: load it with mlflow.pyfunc.load_model")
        questions, texts = questions_and_texts(model_input)
        overrides = {k: v for k, v in (params or {}).items() if k in REQUEST_PARAMS}
        config = self._engine.config.merged(overrides)
        answers = self._engine.answer(questions, texts, config)
        return pd.DataFrame(
            {
                "answer": [a.answer for a in answers],
                "score": [a.score for a in answers],
                "start": [a.start for a in answers],
                "end": [a.end for a in answers],
            }
        )


mlflow.models.set_model(QAModel())
