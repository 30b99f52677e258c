"""Precompiled .pyc files: unchecked-hash, naming the in-image path, identical bytes each time."""

from __future__ import annotations

import marshal
import shutil
import sys
from pathlib import Path

import pytest

from qa_operator.imagebuild.install import can_compile_for, compile_pycs
from qa_operator.imagebuild.target import TargetPython

IMAGE_DIR = "opt/venv/lib/python3.11/site-packages"
SOURCE = '''
"""A module whose code holds sets and frozensets, whose marshalled order follows hashing."""
NAMES = {"alpha", "beta", "gamma", "delta", "epsilon"}

def check(word):
    return word in {"one", "two", "three", "four", "five", "six"}

class Thing:
    def method(self):
        return [name for name in NAMES if check(name)]
'''

pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 11), reason="the image's Python is 3.11; pycs are per version"
)


def _package(root: Path) -> Path:
    for name in ("pkg/__init__.py", "pkg/mod.py", "pkg/sub/deep.py"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SOURCE)
    (root / "pkg/broken.py").write_text("def (:\n")  # e.g. a template for another Python
    return root


def test_compiled_twice_identical_bytes(tmp_path: Path) -> None:
    one = _package(tmp_path / "one")
    two = tmp_path / "two"
    shutil.copytree(one, two)
    assert compile_pycs(one, IMAGE_DIR, TargetPython())
    assert compile_pycs(two, IMAGE_DIR, TargetPython())
    pycs = sorted(path.relative_to(one) for path in one.rglob("*.pyc"))
    assert len(pycs) == 3  # broken.py has none, and is not an error
    for pyc in pycs:
        assert (one / pyc).read_bytes() == (two / pyc).read_bytes(), pyc


def test_unchecked_hash_pycs_naming_the_image_path(tmp_path: Path) -> None:
    root = _package(tmp_path / "site")
    compile_pycs(root, IMAGE_DIR, TargetPython())
    data = (root / "pkg/__pycache__/mod.cpython-311.pyc").read_bytes()
    flags = int.from_bytes(data[4:8], "little")
    assert flags == 0b01  # hash-based, check_source off: no stat of the source at import
    code = marshal.loads(data[16:])
    assert code.co_filename == f"/{IMAGE_DIR}/pkg/mod.py"


def test_compiling_for_another_python_is_skipped(tmp_path: Path) -> None:
    root = _package(tmp_path / "site")
    other = TargetPython(version="3.12")
    assert not can_compile_for(other)
    assert not compile_pycs(root, IMAGE_DIR, other)
    assert not list(root.rglob("*.pyc"))
