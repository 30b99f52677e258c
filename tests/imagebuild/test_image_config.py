"""The config and manifest the builder writes: Dockerfile semantics, Docker v2 only."""

from __future__ import annotations

import json
from typing import Any

import pytest

from qa_operator.imagebuild.imageconfig import (
    DEFAULT_PATH,
    DOCKER_CONFIG,
    DOCKER_LAYER,
    EPOCH,
    Descriptor,
    HistoryLayer,
    config_blob,
    docker_manifest,
    expand,
    image_config,
    merge_env,
)
from qa_operator.imagebuild.recipes import OPERATOR, SERVING
from qa_operator.registry.client import DOCKER_MANIFEST, sha256_digest


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("/opt/venv/bin:$PATH", {"PATH": "/usr/bin"}, "/opt/venv/bin:/usr/bin"),
        ("${HOME}/x", {"HOME": "/h"}, "/h/x"),
        ("$UNSET:a", {}, ":a"),
        ("no variables", {"PATH": "/x"}, "no variables"),
        ("$A$B", {"A": "1", "B": "2"}, "12"),
    ],
)
def test_expand(value: str, env: dict[str, str], expected: str) -> None:
    assert expand(value, env) == expected


@pytest.mark.parametrize(
    ("base", "assignments", "expected"),
    [
        (
            ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"],
            [("PATH", "/opt/venv/bin:$PATH"), ("HOME", "/home/s")],
            ["PATH=/opt/venv/bin:/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "HOME=/home/s"],
        ),
        (  # a variable the base sets keeps its place, with the new value
            ["HOME=/root", "PATH=/bin"],
            [("HOME", "/home/s")],
            ["HOME=/home/s", "PATH=/bin"],
        ),
        (  # no PATH in the base: BuildKit's default, as `docker build` would have
            [],
            [("PATH", "/opt/venv/bin:$PATH")],
            [f"PATH=/opt/venv/bin:{DEFAULT_PATH}"],
        ),
        ([], [], [f"PATH={DEFAULT_PATH}"]),
        (  # later assignments see earlier ones
            ["PATH=/bin"],
            [("A", "1"), ("B", "$A-2")],
            ["PATH=/bin", "A=1", "B=1-2"],
        ),
        (["EMPTY=", "PATH=/bin"], [], ["EMPTY=", "PATH=/bin"]),
    ],
)
def test_merge_env(
    base: list[str], assignments: list[tuple[str, str]], expected: list[str]
) -> None:
    assert merge_env(base, assignments) == expected


def _python_slim_config() -> dict[str, Any]:
    """Shaped like python:3.11-slim-bookworm's config."""
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-10-01T12:00:00Z",
        "container": "0123abc",
        "container_config": {"Cmd": ["/bin/sh", "-c", '#(nop) CMD ["python3"]']},
        "config": {
            "Env": [
                "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "PYTHON_VERSION=3.11.14",
            ],
            "Cmd": ["python3"],
            "Labels": {"maintainer": "x"},
            "ExposedPorts": {"9000/tcp": {}},
        },
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
        "history": [{"created": "2026-10-01T12:00:00Z", "created_by": "debian"}],
    }


def test_serving_config_carries_sagemakers_contract() -> None:
    layers = [HistoryLayer("sha256:" + c * 64, f"layer {c}") for c in "bcd"]
    config = image_config(_python_slim_config(), SERVING, layers)
    runtime = config["config"]
    assert runtime["Entrypoint"] == ["python", "-m", "qa_operator.model.serving"]
    assert runtime["Cmd"] == ["serve"]
    assert runtime["User"] == "10001"
    assert runtime["WorkingDir"] == "/home/serving"
    assert runtime["ExposedPorts"] == {"9000/tcp": {}, "8080/tcp": {}}
    assert runtime["Env"] == [
        "PATH=/opt/venv/bin:/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG=C.UTF-8",
        "PYTHON_VERSION=3.11.14",
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "HF_HUB_OFFLINE=1",
        "TRANSFORMERS_OFFLINE=1",
        "HOME=/home/serving",
    ]
    assert runtime["Labels"] == {"maintainer": "x", **dict(SERVING.labels)}
    assert config["rootfs"]["diff_ids"] == ["sha256:" + c * 64 for c in "abcd"]
    assert [entry["created_by"] for entry in config["history"]] == [
        "debian",
        "layer b",
        "layer c",
        "layer d",
    ]
    assert {entry["created"] for entry in config["history"]} == {"2026-10-01T12:00:00Z"}
    assert config["created"] == "2026-10-01T12:00:00Z"
    assert "container" not in config and "container_config" not in config


def test_operator_config_keeps_the_bases_working_directory() -> None:
    base = _python_slim_config()
    base["config"]["WorkingDir"] = "/srv"
    config = image_config(base, OPERATOR, [])
    runtime = config["config"]
    assert runtime["WorkingDir"] == "/srv"
    assert runtime["Entrypoint"] == ["qa-operator"]
    assert runtime["Cmd"] == ["run", "--standalone", "--liveness=http://0.0.0.0:8080/healthz"]
    assert "QA_OPERATOR_WORK_DIR=/var/cache/qa-operator" in runtime["Env"]
    assert "HOME=/home/operator" in runtime["Env"]


def test_a_base_without_a_creation_time_gets_the_epoch() -> None:
    base = _python_slim_config()
    del base["created"]
    config = image_config(base, SERVING, [HistoryLayer("sha256:" + "b" * 64, "b")])
    assert config["created"] == EPOCH
    assert config["history"][-1]["created"] == EPOCH


def test_the_base_config_is_not_modified() -> None:
    base = _python_slim_config()
    before = json.dumps(base, sort_keys=True)
    image_config(base, SERVING, [HistoryLayer("sha256:" + "b" * 64, "b")])
    assert json.dumps(base, sort_keys=True) == before


def test_manifest_is_docker_v2_schema_2() -> None:
    body, config = config_blob({"a": 1})
    assert config == Descriptor(sha256_digest(body), len(body))
    manifest = json.loads(docker_manifest(config, [Descriptor("sha256:" + "1" * 64, 10)]))
    assert manifest == {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": DOCKER_LAYER, "digest": "sha256:" + "1" * 64, "size": 10}],
    }


def test_same_inputs_same_config_bytes() -> None:
    layers = [HistoryLayer("sha256:" + "b" * 64, "b")]
    first = config_blob(image_config(_python_slim_config(), SERVING, layers))
    second = config_blob(image_config(_python_slim_config(), SERVING, layers))
    assert first == second
