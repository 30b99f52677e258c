"""The package's source files: what the Dockerfiles copy, and a digest that moves with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.sources import copy_sources, project_files, sources_digest

PYPROJECT = """
[project]
name = "demo"
version = "1"
readme = "README.md"

[tool.setuptools.packages.find]
where = ["src"]
"""


def _project(root: Path) -> Path:
    (root / "src/demo/sub").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "README.md").write_text("# demo\n")
    (root / "src/demo/__init__.py").write_text("")
    (root / "src/demo/sub/mod.py").write_text("X = 1\n")
    (root / "src/demo/py.typed").write_text("")
    for noise in (
        "src/demo/__pycache__/mod.cpython-311.pyc",
        "src/demo.egg-info/PKG-INFO",
        "src/.mypy_cache/x.json",
        "tests/test_x.py",
        "notes.txt",
    ):
        (root / noise).parent.mkdir(parents=True, exist_ok=True)
        (root / noise).write_text("noise")
    return root


def test_the_package_files_and_nothing_else(tmp_path: Path) -> None:
    assert project_files(_project(tmp_path)) == [
        "README.md",
        "pyproject.toml",
        "src/demo/__init__.py",
        "src/demo/py.typed",
        "src/demo/sub/mod.py",
    ]


def test_the_digest_moves_with_content_names_and_the_executable_bit(tmp_path: Path) -> None:
    root = _project(tmp_path)
    files = project_files(root)
    before = sources_digest(root, files)
    assert sources_digest(root, files) == before
    (root / "notes.txt").write_text("not part of the package")
    assert sources_digest(root, project_files(root)) == before
    (root / "src/demo/sub/mod.py").write_text("X = 2\n")
    changed = sources_digest(root, files)
    assert changed != before
    (root / "src/demo/sub/mod.py").chmod(0o755)
    assert sources_digest(root, files) != changed


def test_copy_takes_only_the_listed_files(tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    files = project_files(root)
    copy_sources(root, files, tmp_path / "copy")
    copied = sorted(
        p.relative_to(tmp_path / "copy").as_posix()
        for p in (tmp_path / "copy").rglob("*")
        if p.is_file()
    )
    assert copied == files


def test_a_project_without_package_roots_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(ImageBuildError, match=r"packages\.find"):
        project_files(tmp_path)


def test_this_repository_resolves() -> None:
    root = Path(__file__).resolve().parents[2]
    files = project_files(root)
    assert {"pyproject.toml", "README.md", "operator/qa_operator/cli.py"} <= set(files)
    assert all(not name.endswith(".pyc") and "egg-info" not in name for name in files)
