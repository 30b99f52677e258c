"""Building the serving and operator images without a Docker daemon (see docs/image.md)."""

from qa_operator.imagebuild.build import build_image
from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.recipes import (
    OPERATOR,
    RECIPES,
    SERVING,
    SERVING_ONNXRUNTIME,
    Recipe,
    recipe_named,
)
from qa_operator.imagebuild.results import BuildResult, LayerReport
from qa_operator.imagebuild.target import TargetPython, torch_index_url

__all__ = [
    "OPERATOR",
    "RECIPES",
    "SERVING",
    "SERVING_ONNXRUNTIME",
    "BuildResult",
    "ImageBuildError",
    "LayerReport",
    "Recipe",
    "TargetPython",
    "build_image",
    "recipe_named",
    "torch_index_url",
]
