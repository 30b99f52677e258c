"""Packaging the QA model as a deterministic MLflow model directory and model.tar.gz.

The operator imports this module, so it must stay light: no torch or transformers import here
(MLflow itself is imported only inside the functions that need it).

Determinism: MLflow writes volatile fields into MLmodel (creation time, a random model uuid); they
are normalised so the same inputs give the same digest and a byte-identical archive. Weights are
hard-linked into the package (symlinked across filesystems) instead of copied; the archive stores
file contents, never links.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa_operator.model.config import DEFAULT_ENGINE, InferenceConfig
from qa_operator.model.limits import ServingLimits, model_config

MLMODEL = "MLmodel"
QA_MODEL_CODE = Path(__file__).with_name("qa_model.py")
FIXED_CREATED = "1970-01-01 00:00:00.000000"
_CHUNK = 1 << 20

# What the package needs at serving time: the serving image's pins, not the versions installed
# where it is packaged (the operator image has no torch).
RUNTIME_REQUIREMENTS = Path(__file__).with_name("runtime-requirements.txt")
# Files of a HuggingFace snapshot that a package never needs.
_SKIP_NAMES = {".git", ".gitattributes", ".cache", ".huggingface", "__pycache__"}

EXAMPLE_QUESTION = "What is my name?"
EXAMPLE_TEXT = "My name is Alex, I am 32 and live in Copenhagen."


@dataclass(frozen=True)
class ModelPackage:
    path: Path  # the MLflow model directory
    digest: str  # "sha256:<hex>" content digest of the package


# The distribution each engine runs on; a package requires its own engine's, not the others'.
ENGINE_DISTRIBUTIONS = {"torch": "torch", "onnxruntime": "onnxruntime"}
# Weight files the onnxruntime engine never reads (its weights are in the ONNX graph).
_TORCH_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt")


def pinned_requirements(engine: str = "torch") -> list[str]:
    """`name==version` for each distribution a package for `engine` needs at serving time."""
    others = {d for e, d in ENGINE_DISTRIBUTIONS.items() if e != engine}
    lines = (
        line.split("#", 1)[0].strip() for line in RUNTIME_REQUIREMENTS.read_text().splitlines()
    )
    return [line for line in lines if line and line.split("==")[0] not in others]


def build_package(
    model_dir: Path,
    dest: Path,
    config: InferenceConfig,
    *,
    tokenizer_dir: Path | None = None,
    limits: ServingLimits | None = None,
) -> ModelPackage:
    """Package the HuggingFace model in `model_dir` (and its tokenizer, from `tokenizer_dir` or
    else `model_dir`) as an MLflow pyfunc model at `dest`, which must not exist yet. `limits`
    (default: ServingLimits()) are what the serving layer enforces per request.

    With `engine: onnxruntime` the model is exported to ONNX here (and quantized for
    "dynamic-int8"), which needs torch where the package is built; the graph is checked against
    the torch model's logits (ValueError if off) and packaged instead of the torch weights."""
    config.validate()
    if limits is not None:
        limits.validate()
    if (unavailable := engine_unavailable(config.engine)) is not None:
        raise EngineUnavailable(unavailable)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ValueError(f"{model_dir} is not a HuggingFace model directory (no config.json)")
    if dest.exists():
        raise FileExistsError(f"package destination {dest} already exists")

    import mlflow

    dest.parent.mkdir(parents=True, exist_ok=True)
    mlflow.pyfunc.save_model(
        path=str(dest),
        python_model=str(QA_MODEL_CODE),
        signature=_signature(config),
        input_example=_input_example(),
        model_config=model_config(config, limits),
        pip_requirements=pinned_requirements(config.engine),
    )
    artifacts = {"model": "artifacts/model"}
    skip = _redundant_weights(model_dir)
    if config.engine == "onnxruntime":
        try:
            _export_onnx(model_dir, tokenizer_dir or model_dir, dest / "artifacts" / "onnx", config)
        except Exception:
            shutil.rmtree(dest, ignore_errors=True)  # no half-built package left behind
            raise
        artifacts["onnx"] = "artifacts/onnx"
        skip |= {rel for rel, _ in _files(model_dir) if rel.endswith(_TORCH_WEIGHT_SUFFIXES)}
    _link_tree(model_dir, dest / "artifacts" / "model", skip=skip)
    if tokenizer_dir is not None:
        _link_tree(Path(tokenizer_dir), dest / "artifacts" / "tokenizer")
        artifacts["tokenizer"] = "artifacts/tokenizer"
    else:
        artifacts["tokenizer"] = "artifacts/model"
    _normalise_mlmodel(dest, artifacts)
    return ModelPackage(path=dest, digest=package_digest(dest))


def load_package(path: Path) -> ModelPackage:
    """An existing MLflow model directory (e.g. downloaded from an MLflow registry) and its
    content digest."""
    path = Path(path)
    if not (path / MLMODEL).is_file():
        raise ValueError(f"{path} is not an MLflow model directory (no {MLMODEL} file)")
    return ModelPackage(path=path, digest=package_digest(path))


def package_digest(path: Path) -> str:
    """sha256 over every file's relative path and content (links followed), in sorted order."""
    outer = hashlib.sha256()
    for rel, file in _files(path):
        outer.update(rel.encode() + b"\0" + _file_sha256(file).encode() + b"\n")
    return f"sha256:{outer.hexdigest()}"


def write_archive(package: ModelPackage, archive_path: Path) -> str:
    """Write `package` as a deterministic model.tar.gz with its files at the archive root (as
    SageMaker extracts ModelDataUrl into /opt/ml/model); return "sha256:<hex>" of its bytes."""
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive_path.with_name(archive_path.name + ".partial")
    digest = hashlib.sha256()
    with open(tmp, "wb") as raw:
        hashing = _HashingWriter(raw, digest)
        # mtime=0 and no file name keep the gzip header constant.
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=hashing, mtime=0, compresslevel=6) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for directory in _directories(package.path):
                tar.addfile(_tar_info(directory, tarfile.DIRTYPE, 0o755, 0))
            for rel, file in _files(package.path):
                size = file.stat().st_size
                with open(file, "rb") as content:
                    tar.addfile(_tar_info(rel, tarfile.REGTYPE, 0o644, size), content)
    os.replace(tmp, archive_path)
    return f"sha256:{digest.hexdigest()}"


class _HashingWriter(io.RawIOBase):
    def __init__(self, raw: Any, digest: Any) -> None:
        self._raw = raw
        self._digest = digest

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._digest.update(data)
        self._raw.write(data)
        return len(data)


def _tar_info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    """(posix relative path, path) of every regular file under root, links followed, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_NAMES]
        for name in filenames:
            if name in _SKIP_NAMES:
                continue
            path = Path(dirpath) / name
            if path.is_file():
                found.append((path.relative_to(root).as_posix(), path))
    yield from sorted(found)


def _directories(root: Path) -> list[str]:
    dirs = set()
    for rel, _ in _files(root):
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_engine(package_dir: Path) -> str:
    """The engine a package was built for, as its MLmodel records it (`torch` when it names
    none: a torch package, one built before engines existed, or a model that is not ours)."""
    import yaml

    mlmodel = package_dir / MLMODEL
    if not mlmodel.is_file():
        return DEFAULT_ENGINE
    flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors") or {}
    config = (flavors.get("python_function") or {}).get("config") or {}
    return str(config.get("engine") or DEFAULT_ENGINE)


# What exporting the onnxruntime engine's graph at package time imports.
ONNX_EXPORT_TOOLCHAIN = ("torch", "transformers", "onnx", "onnxruntime")


class EngineUnavailable(ValueError):
    """The engine's package cannot be built here: what it needs is not installed."""


def engine_unavailable(engine: str) -> str | None:
    """Why a package of `engine` cannot be built in this environment (None: it can)."""
    if engine != "onnxruntime":
        return None
    missing = [name for name in ONNX_EXPORT_TOOLCHAIN if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (
        "engine onnxruntime is exported from the torch model when the model is packaged, and "
        f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed here: "
        "use engine torch, or build the package where they are installed (build_package) and "
        "deploy it as an MLflow model (source.mlflow)"
    )


def _export_onnx(model_dir: Path, tokenizer_dir: Path, dest: Path, config: InferenceConfig) -> None:
    from qa_operator.model.onnx_export import export_onnx

    export_onnx(model_dir, tokenizer_dir, dest, config.quantize)


def _redundant_weights(model_dir: Path) -> set[str]:
    """PyTorch pickle weights (`*.bin`) when the same model also has safetensors weights, which
    transformers loads first: hub repos often carry both, doubling the package for nothing."""
    files = [rel for rel, _ in _files(model_dir)]
    if not any(rel.endswith(".safetensors") for rel in files):
        return set()
    return {rel for rel in files if rel.endswith(".bin") and "/" not in rel}


def _link_tree(source: Path, target: Path, skip: set[str] | None = None) -> None:
    """Mirror `source`'s files into `target` as hard links, or symlinks across filesystems."""
    for rel, file in _files(source):
        if skip and rel in skip:
            continue
        link = target / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        real = file.resolve()
        try:
            os.link(real, link)
        except OSError:
            os.symlink(real, link)


def _normalise_mlmodel(dest: Path, artifacts: dict[str, str]) -> None:
    """Record the linked artifacts and make MLmodel depend only on the package's inputs."""
    import yaml

    mlmodel_path = dest / MLMODEL
    doc = yaml.safe_load(mlmodel_path.read_text())
    doc["utc_time_created"] = FIXED_CREATED
    doc.pop("model_uuid", None)
    doc.pop("run_id", None)
    doc.pop("artifact_path", None)
    doc["model_size_bytes"] = sum(f.stat().st_size for _, f in _files(dest) if _ != MLMODEL)
    pyfunc = doc["flavors"]["python_function"]
    # MLflow records where the code came from (an absolute build path); only its name is used.
    pyfunc["model_code_path"] = QA_MODEL_CODE.name
    pyfunc["artifacts"] = {name: {"path": rel} for name, rel in sorted(artifacts.items())}
    mlmodel_path.write_text(yaml.safe_dump(doc, sort_keys=True, default_flow_style=False))


def _signature(config: InferenceConfig) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [
            ColSpec("string", "question"),
            ColSpec("string", "text", required=False),
            ColSpec("string", "context", required=False),
        ]
    )
    outputs = Schema(
        [
            ColSpec("string", "answer"),
            ColSpec("double", "score"),
            ColSpec("long", "start"),
            ColSpec("long", "end"),
        ]
    )
    params = ParamSchema(
        [
            ParamSpec("max_answer_length", "long", config.max_answer_length),
            ParamSpec("max_seq_length", "long", config.max_seq_length),
            ParamSpec("doc_stride", "long", config.doc_stride),
            ParamSpec("batch_size", "long", config.batch_size),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def _input_example() -> Any:
    import pandas as pd

    return pd.DataFrame({"question": [EXAMPLE_QUESTION], "text": [EXAMPLE_TEXT]})
