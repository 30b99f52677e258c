"""`qa-operator image build`: build the serving or operator image without Docker and push it.

    qa-operator image build --recipe serving --base REGISTRY/python:3.11-slim-bookworm \\
        --repository qa/serving --tag 0.1.0-cpu [--torch-variant cpu|cu128|pypi]

Credentials as for `image publish`: --username with QA_OPERATOR_REGISTRY_PASSWORD or
--password-stdin for a plain registry, ECR through boto3 otherwise. Prints one JSON object:
uri, digest, tag, layers (each with its size, bytes uploaded, origin and seconds) and
bytes_uploaded. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from qa_operator.imagebuild.build import build_image
from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.recipes import RECIPES
from qa_operator.imagebuild.target import torch_index_url
from qa_operator.registry.cli import add_registry_arguments, registry_client
from qa_operator.registry.client import RegistryError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, choices=sorted(RECIPES), help="which image")
    parser.add_argument(
        "--base",
        required=True,
        help="base image with CPython 3.11, e.g. HOST/python:3.11-slim-bookworm (or @sha256:)",
    )
    parser.add_argument("--repository", required=True, help="target repository name")
    parser.add_argument("--tag", help="tag the image (else it is pushed by digest only)")
    parser.add_argument(
        "--torch-variant",
        default="cpu",
        help="serving image's torch: cpu (default, as serving/Dockerfile), a CUDA build of the "
        "PyTorch index such as cu128, or pypi (the configured index; PyPI's is CUDA)",
    )
    add_registry_arguments(parser)
    parser.add_argument("--cache-dir", type=Path, help="layer cache (default ~/.cache/...)")
    parser.add_argument(
        "--project-dir", type=Path, default=Path("."), help="this repository (default: .)"
    )
    parser.add_argument(
        "--python", help="the base's CPython 3.11 (default: found in the base's layers)"
    )


def run(args: argparse.Namespace) -> int:
    try:
        index = torch_index_url(args.torch_variant)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    client = registry_client(args)
    try:
        result = build_image(
            client,
            recipe=args.recipe,
            base=args.base,
            repository=args.repository,
            tag=args.tag,
            project_dir=args.project_dir,
            torch_index_url=index,
            cache_dir=args.cache_dir,
            python=args.python,
        )
    except (RegistryError, ImageBuildError) as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    print(json.dumps(result.as_json()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="qa-operator image build", description=__doc__, allow_abbrev=False
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
