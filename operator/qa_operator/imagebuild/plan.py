"""Which layers an image gets and the cache key of each: pure functions of the build's inputs.

A key covers everything that decides a layer's bytes: the builder's format version, the target
(Python, ABI, platform tags), the installer and the Python compiling the .pyc files, the package
index, the requirement lines and constraints, the layer below's key where it decides what is
left out, the project's sources and the base's accounts for the app layer, and the compressor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from qa_operator.imagebuild.cache import cache_key
from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.recipes import Recipe
from qa_operator.imagebuild.target import TargetPython
from qa_operator.registry.layers import Compression

LayerName = Literal["torch", "dependencies", "app"]

# Blocks of 1 MiB deflated on every core; level 1 for torch's shared libraries (level 6 saves
# 4% on them at 2.6 times the time), 6 for the rest, which is mostly text.
BLOCK_SIZE = 1024 * 1024
TORCH_COMPRESSION = Compression(level=1, block_size=BLOCK_SIZE)
DEPENDENCIES_COMPRESSION = Compression(level=6, block_size=BLOCK_SIZE)
APP_COMPRESSION = Compression(level=6, block_size=BLOCK_SIZE)


@dataclass(frozen=True)
class Toolchain:
    """The building side's tools, which shape the layers as much as the inputs do."""

    pip: str  # pip's version
    pyc: str | None  # the full version of the Python compiling .pyc files; None: no .pyc


@dataclass(frozen=True)
class LayerPlan:
    name: LayerName
    key: str
    created_by: str  # the image history's description of the layer
    compression: Compression
    inputs: Mapping[str, Any] = field(repr=False)  # what the key hashes (kept in meta.json)


def requirement_lines(text: str, *, source: str) -> list[str]:
    """The lines pip acts on: comments and blank lines dropped. Nested files are refused, since
    their content would escape the cache key."""
    lines = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith(("-r", "-c", "--requirement", "--constraint")):
            raise ImageBuildError(f"{source}: nested requirement files are not supported: {line}")
        lines.append(line)
    return lines


def _plan(
    name: LayerName,
    created_by: str,
    compression: Compression,
    target: TargetPython,
    toolchain: Toolchain,
    inputs: Mapping[str, Any],
) -> LayerPlan:
    full_inputs = {
        "layer": name,
        "target": target.identity,
        "pip": toolchain.pip,
        "pyc": toolchain.pyc,
        "compression": compression.identity,
        **inputs,
    }
    return LayerPlan(name, cache_key(full_inputs), created_by, compression, full_inputs)


def torch_plan(
    target: TargetPython,
    toolchain: Toolchain,
    constraints: str,
    torch_index_url: str | None,
) -> LayerPlan:
    return _plan(
        "torch",
        f"torch and its dependencies ({torch_index_url or 'default index'}) in /opt/venv",
        TORCH_COMPRESSION,
        target,
        toolchain,
        {
            "requirements": ["torch"],
            "constraints": requirement_lines(constraints, source="constraints"),
            "index": torch_index_url,
        },
    )


def dependencies_plan(
    target: TargetPython,
    toolchain: Toolchain,
    requirements: Mapping[str, str],
    constraints: str,
    below: LayerPlan | None,
) -> LayerPlan:
    """`requirements`: file name -> text. What `below` installs is left out of this layer."""
    return _plan(
        "dependencies",
        f"{' '.join(requirements)} in /opt/venv",
        DEPENDENCIES_COMPRESSION,
        target,
        toolchain,
        {
            "requirements": {
                name: requirement_lines(text, source=name) for name, text in requirements.items()
            },
            "constraints": requirement_lines(constraints, source="constraints"),
            "below": below.key if below else None,
        },
    )


def app_plan(
    target: TargetPython,
    toolchain: Toolchain,
    recipe: Recipe,
    *,
    sources_digest: str,
    constraints: str,
    python: str,
    passwd: bytes | None,
    group: bytes | None,
) -> LayerPlan:
    def content_digest(content: bytes | None) -> str | None:
        return None if content is None else hashlib.sha256(content).hexdigest()

    return _plan(
        "app",
        f"qa-operator ({recipe.name}), venv for {python}, user {recipe.account.uid}",
        APP_COMPRESSION,
        target,
        toolchain,
        {
            "sources": sources_digest,
            "build_constraints": requirement_lines(constraints, source="constraints"),
            "python": python,
            "account": [
                recipe.account.name,
                recipe.account.uid,
                recipe.account.home,
                recipe.account.shell,
            ],
            "directories": list(recipe.directories),
            "account_directories": list(recipe.account_directories),
            "passwd": content_digest(passwd),
            "group": content_digest(group),
        },
    )


def layer_plans(
    recipe: Recipe,
    target: TargetPython,
    toolchain: Toolchain,
    *,
    requirements: Mapping[str, str],
    constraints: str,
    torch_index_url: str | None,
    sources_digest: str,
    python: str,
    passwd: bytes | None,
    group: bytes | None,
) -> Sequence[LayerPlan]:
    """The recipe's layers, bottom first: [torch,] dependencies, app."""
    plans: list[LayerPlan] = []
    torch = (
        torch_plan(target, toolchain, constraints, torch_index_url) if recipe.with_torch else None
    )
    if torch:
        plans.append(torch)
    plans.append(dependencies_plan(target, toolchain, requirements, constraints, torch))
    plans.append(
        app_plan(
            target,
            toolchain,
            recipe,
            sources_digest=sources_digest,
            constraints=constraints,
            python=python,
            passwd=passwd,
            group=group,
        )
    )
    return plans
