"""The image config and manifest the builder writes: pure functions of the recipe and the base.

Written as Docker v2 schema 2 only (SageMaker's CreateModel refuses OCI manifests). The runtime
settings follow Dockerfile semantics, so that the built image and `docker build` agree: ENV
replaces a variable in place or appends it and expands "$NAME"; EXPOSE and LABEL add to the
base's; ENTRYPOINT, CMD, USER and WORKDIR replace.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qa_operator.imagebuild.recipes import Recipe
from qa_operator.registry.client import DOCKER_MANIFEST, sha256_digest

DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
# No wall clock in the image: the base's `created`, or this when it has none.
EPOCH = "1970-01-01T00:00:00Z"
# What BuildKit puts in an image whose base sets no PATH.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HISTORY_COMMENT = "qa-operator image build"
# Fields of a config that describe the base's own build container, not this image.
_BUILD_CONTAINER_FIELDS = ("container", "container_config")

_VARIABLE = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class Descriptor:
    digest: str
    size: int


@dataclass(frozen=True)
class HistoryLayer:
    """One layer the builder adds: its uncompressed digest and what made it."""

    diff_id: str
    created_by: str


def canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def expand(value: str, env: Mapping[str, str]) -> str:
    """Dockerfile variable expansion: "$NAME" and "${NAME}" become the value, or "" if unset."""
    return _VARIABLE.sub(lambda match: env.get(match["braced"] or match["bare"], ""), value)


def merge_env(base: Sequence[str], assignments: Sequence[tuple[str, str]]) -> list[str]:
    """The base's Env ("NAME=value" entries) after ENV `assignments`, in Docker's order: a
    variable already set keeps its place, a new one goes at the end."""
    names = [entry.partition("=")[0] for entry in base]
    values = {entry.partition("=")[0]: entry.partition("=")[2] for entry in base}
    values.setdefault("PATH", DEFAULT_PATH)
    for name, value in assignments:
        values[name] = expand(value, values)
        if name not in names:
            names.append(name)
    if "PATH" not in names:
        names.insert(0, "PATH")
    return [f"{name}={values[name]}" for name in names]


def image_config(
    base_config: Mapping[str, Any], recipe: Recipe, layers: Sequence[HistoryLayer]
) -> dict[str, Any]:
    """The base's config with the recipe's runtime settings and `layers` added on top."""
    config = copy.deepcopy(dict(base_config))
    for field in _BUILD_CONTAINER_FIELDS:
        config.pop(field, None)
    created = config.get("created") or EPOCH
    config["created"] = created
    runtime = dict(config.get("config") or {})
    runtime["Env"] = merge_env(runtime.get("Env") or [], recipe.env)
    runtime["Entrypoint"] = list(recipe.entrypoint)
    runtime["Cmd"] = list(recipe.cmd)
    runtime["User"] = recipe.user
    if recipe.working_dir is not None:
        runtime["WorkingDir"] = recipe.working_dir
    ports = dict(runtime.get("ExposedPorts") or {})
    runtime["ExposedPorts"] = ports | {port: {} for port in recipe.exposed_ports}
    runtime["Labels"] = dict(runtime.get("Labels") or {}) | dict(recipe.labels)
    config["config"] = runtime
    base_rootfs = config.get("rootfs") or {}
    config["rootfs"] = {
        "type": "layers",
        "diff_ids": [*base_rootfs.get("diff_ids", []), *(layer.diff_id for layer in layers)],
    }
    config["history"] = [
        *config.get("history", []),
        *(
            {"created": created, "created_by": layer.created_by, "comment": HISTORY_COMMENT}
            for layer in layers
        ),
    ]
    config.setdefault("os", "linux")
    config.setdefault("architecture", "amd64")
    return config


def docker_manifest(config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    """A Docker v2 schema 2 manifest, canonical JSON (its bytes define the image digest)."""
    return canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "digest": config.digest, "size": config.size},
            "layers": [
                {"mediaType": DOCKER_LAYER, "digest": layer.digest, "size": layer.size}
                for layer in layers
            ],
        }
    )


def config_blob(config: Mapping[str, Any]) -> tuple[bytes, Descriptor]:
    body = canonical_json(config)
    return body, Descriptor(sha256_digest(body), len(body))
