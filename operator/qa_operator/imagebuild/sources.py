"""This repository's package as the image gets it: the files `pip install` reads to build it,
the same ones the Dockerfiles COPY (pyproject.toml, the readme, the package roots), and a digest
of them that keys the app layer."""

from __future__ import annotations

import hashlib
import os
import shutil
import tomllib
from pathlib import Path
from typing import Any

from qa_operator.imagebuild.errors import ImageBuildError

# Build and tool output that may lie in a working tree but never makes the package.
_IGNORED_DIRECTORIES = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", "build"}
_IGNORED_SUFFIXES = (".pyc", ".pyo")


def _readme(project: dict[str, Any]) -> str | None:
    readme = project.get("readme")
    if isinstance(readme, dict):
        readme = readme.get("file")
    return readme if isinstance(readme, str) else None


def project_files(project_dir: Path) -> list[str]:
    """The package's source files, relative POSIX paths, sorted."""
    pyproject_path = project_dir / "pyproject.toml"
    try:
        pyproject = tomllib.loads(pyproject_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ImageBuildError(f"{pyproject_path}: {exc}") from exc
    roots = pyproject.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {})
    where = roots.get("where")
    if not where:
        raise ImageBuildError(
            f"{pyproject_path} has no [tool.setuptools.packages.find] where: "
            "the builder cannot tell which directories hold the package"
        )
    files = ["pyproject.toml"]
    readme = _readme(pyproject.get("project", {}))
    if readme:
        files.append(readme)
    for root in where:
        top = project_dir / root
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(
                name
                for name in dirnames
                if name not in _IGNORED_DIRECTORIES and not name.endswith(".egg-info")
            )
            for name in filenames:
                if not name.endswith(_IGNORED_SUFFIXES):
                    files.append((Path(dirpath) / name).relative_to(project_dir).as_posix())
    missing = [name for name in files if not (project_dir / name).is_file()]
    if missing:
        raise ImageBuildError(f"{project_dir} lacks {', '.join(missing)}")
    return sorted(set(files))


def sources_digest(project_dir: Path, files: list[str]) -> str:
    """Names, executable bits and contents of `files`: what the built package depends on."""
    digest = hashlib.sha256()
    for name in files:
        path = project_dir / name
        executable = os.access(path, os.X_OK)
        digest.update(f"{name}\0{int(executable)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def copy_sources(project_dir: Path, files: list[str], destination: Path) -> None:
    """Copy `files` alone, so the build reads nothing else (no stale build/ or egg-info) and
    writes into a scratch directory, never into the project."""
    for name in files:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project_dir / name, target)
        shutil.copymode(project_dir / name, target)
