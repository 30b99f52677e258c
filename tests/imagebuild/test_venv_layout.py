"""The venv at /opt/venv: pip's --target layout mapped to a venv's, scripts, RECORD, pyvenv.cfg."""

from __future__ import annotations

import pytest

from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.target import TargetPython
from qa_operator.imagebuild.venvlayout import (
    InstalledDist,
    canonical_name,
    image_path,
    interpreter_links,
    parse_metadata_name_version,
    placements,
    pyvenv_cfg,
    record_hash,
    record_paths,
    rewrite_record,
    rewrite_shebang,
    split_dists,
    target_path,
)

TARGET = TargetPython()
SITE = "opt/venv/lib/python3.11/site-packages"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        (
            b"#!/work/main/.venv/bin/python\nimport sys\nfrom kopf.cli import main\n",
            b"#!/opt/venv/bin/python\nimport sys\nfrom kopf.cli import main\n",
        ),
        (b"#!/usr/bin/python3.11 -E\nprint()\n", b"#!/opt/venv/bin/python\nprint()\n"),
        (  # pip's wrapper for an interpreter path too long for a shebang
            b"#!/bin/sh\n'''exec' \"/very/long/path/bin/python\" \"$0\" \"$@\"\n' '''\n"
            b"import sys\n",
            b"#!/opt/venv/bin/python\nimport sys\n",
        ),
        (b"#!/bin/sh\necho not python\n", None),
        (b"\x7fELF binary", None),
        (b"", None),
        (b"#!/usr/bin/env python3", b"#!/opt/venv/bin/python"),
    ],
)
def test_rewrite_shebang(script: bytes, expected: bytes | None) -> None:
    assert rewrite_shebang(script) == expected


def test_rewriting_twice_changes_nothing_more() -> None:
    once = rewrite_shebang(b"#!/x/python\nrun()\n")
    assert once is not None
    assert rewrite_shebang(once) == once


@pytest.mark.parametrize(
    ("record_path", "in_target", "in_image"),
    [
        ("kopf/__init__.py", "kopf/__init__.py", f"{SITE}/kopf/__init__.py"),
        (
            "kopf-1.45.2.dist-info/RECORD",
            "kopf-1.45.2.dist-info/RECORD",
            f"{SITE}/kopf-1.45.2.dist-info/RECORD",
        ),
        ("six.py", "six.py", f"{SITE}/six.py"),
        ("../../bin/kopf", "bin/kopf", "opt/venv/bin/kopf"),
        (
            "../../share/man/man1/isympy.1",
            "share/man/man1/isympy.1",
            "opt/venv/share/man/man1/isympy.1",
        ),
    ],
)
def test_paths_from_pips_target_layout_to_the_venv(
    record_path: str, in_target: str, in_image: str
) -> None:
    assert target_path(record_path) == in_target
    assert image_path(record_path, TARGET) == in_image


@pytest.mark.parametrize("record_path", ["../../../etc/passwd", "/etc/passwd", "../../../../x"])
def test_paths_outside_the_install_are_refused(record_path: str) -> None:
    with pytest.raises(ImageBuildError, match="leaves"):
        image_path(record_path, TARGET)


def _dist(name: str, version: str, *files: str) -> InstalledDist:
    return InstalledDist(name, version, f"{name}-{version}.dist-info", files)


def test_a_file_two_distributions_record_is_placed_once() -> None:
    mlflow = _dist("mlflow", "3.17.2", "mlflow/server.py", "../../bin/mlflow")
    skinny = _dist("mlflow-skinny", "3.17.2", "mlflow/__init__.py", "../../bin/mlflow")
    placed = placements([mlflow, skinny], TARGET)
    assert placed == {
        "mlflow/server.py": f"{SITE}/mlflow/server.py",
        "mlflow/__init__.py": f"{SITE}/mlflow/__init__.py",
        "bin/mlflow": "opt/venv/bin/mlflow",
    }


TORCH_LAYER = {"torch": "2.15.0", "filelock": "4.3.1", "sympy": "1.14.0"}


@pytest.mark.parametrize(
    ("installed", "kept", "dropped"),
    [
        (  # what the layer below installed is left out; the rest stays
            [("mlflow", "3.17.2"), ("filelock", "4.3.1"), ("numpy", "2.4.6")],
            ["mlflow", "numpy"],
            ["filelock"],
        ),
        ([("numpy", "2.4.6")], ["numpy"], []),
        ([("torch", "2.15.0")], [], ["torch"]),
    ],
)
def test_split_dists_leaves_out_what_the_layer_below_has(
    installed: list[tuple[str, str]], kept: list[str], dropped: list[str]
) -> None:
    dists = [_dist(name, version, f"{name}/__init__.py") for name, version in installed]
    kept_dists, dropped_dists = split_dists(dists, TORCH_LAYER)
    assert [d.name for d in kept_dists] == sorted(kept)
    assert [d.name for d in dropped_dists] == sorted(dropped)


def test_the_same_distribution_at_another_version_is_an_error() -> None:
    with pytest.raises(ImageBuildError, match=r"filelock resolved to 4\.4\.0"):
        split_dists([_dist("filelock", "4.4.0", "filelock/__init__.py")], TORCH_LAYER)


@pytest.mark.parametrize(
    ("name", "canonical"), [("Flask_CORS", "flask-cors"), ("zope.interface", "zope-interface")]
)
def test_canonical_name(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_metadata_name_and_version_from_the_headers_only() -> None:
    metadata = "Metadata-Version: 2.4\nName: Flask_CORS\nVersion: 6.0.5\n\nName: not a header\n"
    assert parse_metadata_name_version(metadata) == ("flask-cors", "6.0.5")
    with pytest.raises(ImageBuildError):
        parse_metadata_name_version("Metadata-Version: 2.4\n")


RECORD = (
    "qa_operator/__init__.py,sha256=abc,10\n"
    "../../bin/qa-operator,sha256=old,200\n"
    "qa_operator-0.1.0.dist-info/direct_url.json,sha256=def,90\n"
    "qa_operator-0.1.0.dist-info/RECORD,,\n"
)


def test_record_rewritten_to_what_the_image_holds() -> None:
    script = b"#!/opt/venv/bin/python\n"
    rewritten = rewrite_record(
        RECORD,
        {"../../bin/qa-operator": script, "qa_operator-0.1.0.dist-info/direct_url.json": None},
    )
    assert rewritten == (
        "qa_operator/__init__.py,sha256=abc,10\n"
        f"../../bin/qa-operator,{record_hash(script)},{len(script)}\n"
        "qa_operator-0.1.0.dist-info/RECORD,,\n"
    )
    assert record_paths(rewritten) == (
        "qa_operator/__init__.py",
        "../../bin/qa-operator",
        "qa_operator-0.1.0.dist-info/RECORD",
    )


def test_record_hash_is_pips_urlsafe_base64_sha256() -> None:
    assert record_hash(b"") == "sha256=47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"


def test_pyvenv_cfg_and_links_name_the_bases_interpreter() -> None:
    cfg = pyvenv_cfg("/usr/local/bin/python3.11", TARGET).decode()
    assert cfg.splitlines() == [
        "home = /usr/local/bin",
        "include-system-site-packages = false",
        "version = 3.11",
        "executable = /usr/local/bin/python3.11",
    ]
    assert interpreter_links("/usr/bin/python3.11", TARGET) == {
        "opt/venv/bin/python": "/usr/bin/python3.11",
        "opt/venv/bin/python3": "/usr/bin/python3.11",
        "opt/venv/bin/python3.11": "/usr/bin/python3.11",
    }
