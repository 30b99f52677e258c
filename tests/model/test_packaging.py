"""Packaging: light import, deterministic digest and archive, linked weights, loadable result."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import qa_operator
from qa_operator.model.config import InferenceConfig
from qa_operator.model.packaging import (
    ModelPackage,
    build_package,
    load_package,
    package_digest,
    recorded_engine,
    write_archive,
)

OPERATOR_SRC = str(Path(qa_operator.__file__).resolve().parents[1])


def test_importing_packaging_and_sources_stays_light() -> None:
    script = (
        "import sys, qa_operator.model.packaging, qa_operator.model.sources, "
        "qa_operator.model.config\n"
        "heavy = [m for m in ('torch', 'transformers', 'mlflow', 'huggingface_hub') "
        "if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": OPERATOR_SRC}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert out.returncode == 0, out.stderr


def test_same_inputs_give_same_digest_and_identical_archive(
    tiny_qa_model_dir: Path, tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    again = build_package(tiny_qa_model_dir, tmp_path / "again", InferenceConfig())
    assert again.digest == tiny_qa_package.digest
    assert again.digest.startswith("sha256:") and len(again.digest) == len("sha256:") + 64
    first = write_archive(tiny_qa_package, tmp_path / "a" / "model.tar.gz")
    second = write_archive(again, tmp_path / "b" / "model.tar.gz")
    assert first == second
    a_bytes = (tmp_path / "a" / "model.tar.gz").read_bytes()
    assert a_bytes == (tmp_path / "b" / "model.tar.gz").read_bytes()
    assert first == "sha256:" + hashlib.sha256(a_bytes).hexdigest()


def test_a_different_model_or_config_changes_the_digest(
    tiny_qa_package: ModelPackage,
    make_tiny_qa_model_dir: Callable[[Path, int], Path],
    tiny_qa_model_dir: Path,
    tmp_path: Path,
) -> None:
    same_seed = make_tiny_qa_model_dir(tmp_path / "seed0", 0)
    other_seed = make_tiny_qa_model_dir(tmp_path / "seed1", 1)
    assert build_package(same_seed, tmp_path / "p0", InferenceConfig()).digest == (
        tiny_qa_package.digest
    )
    assert build_package(other_seed, tmp_path / "p1", InferenceConfig()).digest != (
        tiny_qa_package.digest
    )
    config = InferenceConfig(max_answer_length=12)
    assert build_package(tiny_qa_model_dir, tmp_path / "p2", config).digest != (
        tiny_qa_package.digest
    )


def test_mlmodel_is_normalised_and_requirements_installable(tiny_qa_package: ModelPackage) -> None:
    mlmodel = yaml.safe_load((tiny_qa_package.path / "MLmodel").read_text())
    assert "model_uuid" not in mlmodel
    assert mlmodel["utc_time_created"] == "1970-01-01 00:00:00.000000"
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["model_code_path"] == "qa_model.py"
    assert pyfunc["artifacts"] == {
        "model": {"path": "artifacts/model"},
        "tokenizer": {"path": "artifacts/model"},
    }
    assert pyfunc["config"] == InferenceConfig().to_dict()
    params = {p["name"]: p["default"] for p in json.loads(mlmodel["signature"]["params"])}
    assert params == {
        "max_answer_length": 30,
        "max_seq_length": 384,
        "doc_stride": 128,
        "batch_size": 16,
    }
    requirements = (tiny_qa_package.path / "requirements.txt").read_text().split()
    names = {r.split("==")[0] for r in requirements}
    assert {"mlflow", "torch", "transformers", "pandas"} <= names
    assert all("==" in r and "+" not in r for r in requirements), requirements


def test_weights_are_linked_not_copied(
    tiny_qa_model_dir: Path, tiny_qa_package: ModelPackage
) -> None:
    source = tiny_qa_model_dir / "model.safetensors"
    packaged = tiny_qa_package.path / "artifacts" / "model" / "model.safetensors"
    assert os.path.samefile(source, packaged)


def test_archive_has_files_at_root_and_no_links(
    tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    archive = tmp_path / "model.tar.gz"
    write_archive(tiny_qa_package, archive)
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert "MLmodel" in names and "artifacts/model/model.safetensors" in names
        assert all(m.isfile() or m.isdir() for m in members)
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
        extracted = tmp_path / "opt-ml-model"
        tar.extractall(extracted, filter="data")
    assert load_package(extracted).digest == tiny_qa_package.digest
    assert archive.read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0


def test_archive_follows_symlinks(tiny_qa_package: ModelPackage, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_qa_package.path, copy)
    weights = copy / "artifacts" / "model" / "model.safetensors"
    real = tmp_path / "elsewhere.safetensors"
    shutil.move(weights, real)
    weights.symlink_to(real)
    linked = load_package(copy)
    assert linked.digest == tiny_qa_package.digest
    assert write_archive(linked, tmp_path / "l.tar.gz") == write_archive(
        tiny_qa_package, tmp_path / "p.tar.gz"
    )


def test_separate_tokenizer_dir_without_model_files(
    tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import pandas as pd

    tokenizer_dir = tmp_path / "tok"
    tokenizer_dir.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_qa_model_dir / name, tokenizer_dir / name)
    package = build_package(
        tiny_qa_model_dir, tmp_path / "pkg", InferenceConfig(), tokenizer_dir=tokenizer_dir
    )
    assert (package.path / "artifacts" / "tokenizer" / "tokenizer.json").is_file()
    model = mlflow.pyfunc.load_model(str(package.path))
    text = "Alex lives in Copenhagen."
    result = model.predict(pd.DataFrame({"question": ["Where?"], "text": [text]}))
    assert result["answer"][0] == text[result["start"][0] : result["end"][0]]


def test_bad_inputs_are_refused(
    tiny_qa_model_dir: Path, tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="no MLmodel"):
        load_package(tmp_path)
    with pytest.raises(ValueError, match="not a HuggingFace model directory"):
        build_package(tmp_path, tmp_path / "x", InferenceConfig())
    with pytest.raises(FileExistsError):
        build_package(tiny_qa_model_dir, tiny_qa_package.path, InferenceConfig())
    with pytest.raises(ValueError, match="doc_stride"):
        build_package(tiny_qa_model_dir, tmp_path / "y", InferenceConfig(doc_stride=400))
    assert package_digest(tiny_qa_package.path) == tiny_qa_package.digest


def test_pickle_weights_are_left_out_when_safetensors_exist(
    tiny_qa_model_dir: Path, tiny_qa_package: ModelPackage, tmp_path: Path
) -> None:
    both = tmp_path / "both"
    shutil.copytree(tiny_qa_model_dir, both)
    (both / "pytorch_model.bin").write_bytes(b"pickled weights that transformers would not load")
    package = build_package(both, tmp_path / "pkg", InferenceConfig())
    assert not (package.path / "artifacts" / "model" / "pytorch_model.bin").exists()
    assert package.digest == tiny_qa_package.digest


def test_default_torch_package_records_no_engine(tiny_qa_package: ModelPackage) -> None:
    # Packages from before engines existed keep their digest: the default engine is implicit.
    mlmodel = yaml.safe_load((tiny_qa_package.path / "MLmodel").read_text())
    assert "engine" not in mlmodel["flavors"]["python_function"]["config"]
    assert "onnxruntime" not in (tiny_qa_package.path / "requirements.txt").read_text()


def test_onnxruntime_package_records_its_engine_and_graph_not_torch_weights(
    tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    config = InferenceConfig(engine="onnxruntime", quantize="dynamic-int8")
    package = build_package(tiny_qa_model_dir, tmp_path / "onnx", config)
    mlmodel = yaml.safe_load((package.path / "MLmodel").read_text())
    pyfunc = mlmodel["flavors"]["python_function"]
    assert pyfunc["config"]["engine"] == "onnxruntime"
    assert pyfunc["config"]["quantize"] == "dynamic-int8"
    assert pyfunc["artifacts"]["onnx"] == {"path": "artifacts/onnx"}
    assert (package.path / "artifacts" / "onnx" / "model.onnx").is_file()
    model_files = {p.name for p in (package.path / "artifacts" / "model").iterdir()}
    assert "model.safetensors" not in model_files
    assert {"config.json", "tokenizer.json"} <= model_files
    names = {r.split("==")[0] for r in (package.path / "requirements.txt").read_text().split()}
    assert "onnxruntime" in names and "torch" not in names
    assert InferenceConfig.from_dict(pyfunc["config"]) == config


def test_the_recorded_engine_is_read_back_from_the_package(
    tiny_qa_package: ModelPackage, tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    onnx = build_package(
        tiny_qa_model_dir, tmp_path / "onnx", InferenceConfig(engine="onnxruntime")
    )
    assert recorded_engine(onnx.path) == "onnxruntime"
    assert recorded_engine(tiny_qa_package.path) == "torch"
    assert recorded_engine(tmp_path / "not-a-package") == "torch"


def test_an_onnx_graph_off_from_the_torch_logits_fails_the_check(
    make_tiny_qa_model_dir: Callable[[Path, int], Path], tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from qa_operator.model.onnx_export import (
        FP32_TOLERANCE,
        ExportMismatch,
        check_logits,
        export_onnx,
        probe_inputs,
    )

    reference_dir = make_tiny_qa_model_dir(tmp_path / "seed0", 0)
    other_dir = make_tiny_qa_model_dir(tmp_path / "seed1", 1)
    other_graph = export_onnx(other_dir, other_dir, tmp_path / "graph", "none")
    probe = probe_inputs(AutoTokenizer.from_pretrained(str(reference_dir)))
    model = AutoModelForQuestionAnswering.from_pretrained(str(reference_dir)).eval()
    with torch.inference_mode():
        output = model(**{k: torch.from_numpy(v) for k, v in probe.items()})
    expected = (output.start_logits.numpy(), output.end_logits.numpy())
    own_graph = export_onnx(reference_dir, reference_dir, tmp_path / "own", "none")
    assert check_logits(own_graph, probe, expected, FP32_TOLERANCE).relative < 1e-4
    with pytest.raises(
        ExportMismatch, match=r"differ from the torch model.s .*\(use engine: torch\)"
    ):
        check_logits(other_graph, probe, expected, FP32_TOLERANCE)


def test_onnxruntime_package_without_torch_where_it_is_built_is_a_clear_error(
    tiny_qa_model_dir: Path, tmp_path: Path
) -> None:
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "sys.modules['torch'] = None  # as in the operator image\n"
        "from qa_operator.model.config import InferenceConfig\n"
        "from qa_operator.model.packaging import build_package\n"
        "try:\n"
        "    build_package(Path(sys.argv[1]), Path(sys.argv[2]),\n"
        "                  InferenceConfig(engine='onnxruntime'))\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    env = {**os.environ, "PYTHONPATH": OPERATOR_SRC}
    out = subprocess.run(
        [sys.executable, "-c", script, str(tiny_qa_model_dir), str(tmp_path / "p")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "torch is not installed here" in out.stdout
    assert not (tmp_path / "p").exists()  # nothing half-built left at the destination
