"""pytest plugin: tiny BERT question-answering models built locally (no download), and MLflow
packages of them.

Fixtures:
  tiny_qa_model_dir -> Path          (session) random weights: HuggingFace dir, config, tokenizer
  tiny_qa_package -> ModelPackage    (session) that model packaged with build_package, defaults
  make_tiny_qa_model_dir(path, seed) -> Path   a *different* model per seed ("model changed")
  trained_qa_model_dir -> Path       (session) a tiny model TRAINED to answer (about a minute the
                                     first time on a machine, then from the cache:
                                     qa_operator.model.trained.default_cache_dir())
  trained_qa_package -> ModelPackage (session) that model packaged with build_package, defaults
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from qa_operator.model.config import InferenceConfig
from qa_operator.model.packaging import ModelPackage, build_package
from qa_operator.model.tiny import make_tiny_qa_model_dir as _make
from qa_operator.model.trained import trained_qa_model_dir as _trained

DEMO_TEXT = "My name is Alex, I am 32 and live in Copenhagen."
DEMO_QUESTIONS = ("What is my name?", "How old am I?", "Where do I live?")


@pytest.fixture(scope="session")
def tiny_qa_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make(tmp_path_factory.mktemp("tiny-qa-model") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_qa_package(
    tiny_qa_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> ModelPackage:
    dest = tmp_path_factory.mktemp("tiny-qa-package") / "package"
    return build_package(tiny_qa_model_dir, dest, InferenceConfig())


@pytest.fixture(scope="session")
def make_tiny_qa_model_dir() -> Callable[[Path, int], Path]:
    """Factory: make_tiny_qa_model_dir(path, seed) writes a tiny model whose weights depend on
    `seed` (same seed, same bytes) and returns `path`."""

    def make(path: Path, seed: int = 0) -> Path:
        return _make(path, seed=seed)

    return make


@pytest.fixture(scope="session")
def trained_qa_model_dir() -> Path:
    """The trained model from the default cache (trained there once per machine)."""
    return _trained()


@pytest.fixture(scope="session")
def trained_qa_package(
    trained_qa_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> ModelPackage:
    dest = tmp_path_factory.mktemp("trained-qa-package") / "package"
    return build_package(trained_qa_model_dir, dest, InferenceConfig())
