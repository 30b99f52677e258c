"""Is a fetched model source something we can serve as extractive QA? Pure checks over the
source's metadata files (config.json, the file list, MLmodel) and the spec; each returns what is
wrong, in words naming what was found, or None. The caller reads the files and raises.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Collection, Mapping
from dataclasses import fields
from typing import Any

from qa_operator.model.config import InferenceConfig

QA_ARCHITECTURE_SUFFIX = "ForQuestionAnswering"
TOKENIZER_FILE = "tokenizer.json"
# Slow-tokenizer vocabularies that transformers converts into a fast tokenizer when
# tokenizer.json is missing (WordPiece, BPE, SentencePiece).
CONVERTIBLE_VOCABULARIES = (
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
NO_FAST_TOKENIZER = f"no fast tokenizer ({TOKENIZER_FILE})"
# The serving contract: the columns a request carries and the column an answer comes back in.
QA_INPUT_COLUMNS = ("question", "text")
QA_OUTPUT_COLUMN = "answer"
# InferenceConfig field -> its name under spec.model.inference (num_threads is not in the spec).
INFERENCE_SPEC_FIELDS = {
    "max_answer_length": "maxAnswerLength",
    "max_seq_length": "maxSeqLength",
    "doc_stride": "docStride",
    "batch_size": "batchSize",
    "quantize": "quantize",
    "num_threads": "numThreads",
    "engine": "engine",
}


class TokenizerFiles(enum.Enum):
    FAST = "fast"  # tokenizer.json: loads as a fast tokenizer as is
    CONVERTIBLE = "convertible"  # only a slow vocabulary: fast only if the conversion works
    NONE = "none"


def architecture_problem(config: Mapping[str, Any]) -> str | None:
    """config.json must name a `*ForQuestionAnswering` architecture: any other head (or none)
    would load with a randomly initialised QA head and answer garbage."""
    architectures = config.get("architectures")
    if not isinstance(architectures, list) or not architectures:
        return f"config.json names no architectures: a *{QA_ARCHITECTURE_SUFFIX} model is needed"
    if any(isinstance(a, str) and a.endswith(QA_ARCHITECTURE_SUFFIX) for a in architectures):
        return None
    return f"architectures {architectures!r}: a *{QA_ARCHITECTURE_SUFFIX} model is needed"


def tokenizer_files(names: Collection[str]) -> TokenizerFiles:
    """What the model directory's top-level file names promise about a fast tokenizer (answer
    spans need its offsets)."""
    if TOKENIZER_FILE in names:
        return TokenizerFiles.FAST
    if any(name in names for name in CONVERTIBLE_VOCABULARIES):
        return TokenizerFiles.CONVERTIBLE
    return TokenizerFiles.NONE


def mlmodel_problem(mlmodel: Mapping[str, Any]) -> str | None:
    """An MLflow model must be a python_function model with the QA serving signature: string
    columns `question` and `text` in, an `answer` string column out."""
    flavors = mlmodel.get("flavors")
    flavor_names = sorted(flavors) if isinstance(flavors, Mapping) else []
    if "python_function" not in flavor_names:
        return f"MLmodel flavors {flavor_names!r}: a python_function model is needed"
    signature = mlmodel.get("signature")
    if not isinstance(signature, Mapping) or not signature.get("inputs"):
        return (
            "MLmodel has no input signature: a QA model with string columns "
            f"{' and '.join(QA_INPUT_COLUMNS)} in and {QA_OUTPUT_COLUMN} out is needed"
        )
    inputs = _columns(signature.get("inputs"))
    if inputs is None or any(inputs.get(c) != "string" for c in QA_INPUT_COLUMNS):
        return (
            f"input schema {_describe(inputs, signature.get('inputs'))}: string columns "
            f"{' and '.join(QA_INPUT_COLUMNS)} are needed"
        )
    outputs = _columns(signature.get("outputs"))
    if outputs is None or outputs.get(QA_OUTPUT_COLUMN) != "string":
        return (
            f"output schema {_describe(outputs, signature.get('outputs'))}: "
            f"a string column {QA_OUTPUT_COLUMN} is needed"
        )
    return None


def non_default_inference(config: InferenceConfig) -> list[str]:
    """spec.model.inference fields (spec names) that differ from the defaults. The parsed spec
    cannot tell a default written out from one left unset, and both mean the same."""
    defaults = InferenceConfig()
    return [
        INFERENCE_SPEC_FIELDS[f.name]
        for f in fields(InferenceConfig)
        if getattr(config, f.name) != getattr(defaults, f.name)
    ]


def _columns(schema: Any) -> dict[str, str] | None:
    """{name: type} of an MLmodel schema (a JSON string of column specs); None if it is not one.
    Unnamed (tensor) specs have no columns to offer."""
    if schema is None:
        return {}
    try:
        specs = json.loads(schema) if isinstance(schema, str) else schema
    except ValueError:
        return None
    if not isinstance(specs, list):
        return None
    return {
        str(spec["name"]): str(spec.get("type"))
        for spec in specs
        if isinstance(spec, Mapping) and "name" in spec
    }


def _describe(columns: dict[str, str] | None, raw: Any) -> str:
    if columns is None:
        return repr(raw)
    if not columns:
        return "without named columns"
    return "[" + ", ".join(f"{name}: {kind}" for name, kind in columns.items()) + "]"
