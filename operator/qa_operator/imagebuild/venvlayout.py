"""The virtualenv at /opt/venv, written without running the target interpreter: pyvenv.cfg,
the interpreter links, console scripts whose shebang names the venv's python, and each installed
distribution's files mapped from pip's `--target` layout to where a venv keeps them."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.target import VENV, TargetPython

VENV_PYTHON = f"/{VENV}/bin/python"
# pip records a --target install relative to <home>/lib/python; scripts land in <home>/bin and
# data files in <home>/share etc. ("../../bin/kopf" in RECORD).
_TARGET_LIB = "lib/python"
# Written by pip for a local project: it names the temporary source directory, so it would make
# the layer differ on every build.
DIRECT_URL = "direct_url.json"


def pyvenv_cfg(python: str, target: TargetPython) -> bytes:
    home = posixpath.dirname(python)
    return (
        f"home = {home}\n"
        "include-system-site-packages = false\n"
        f"version = {target.version}\n"
        f"executable = {python}\n"
    ).encode()


def interpreter_links(python: str, target: TargetPython) -> dict[str, str]:
    """bin/python, bin/python3, bin/python3.X (paths in the image) -> the base's interpreter."""
    names = ("python", "python3", f"python{target.version}")
    return {f"{VENV}/bin/{name}": python for name in names}


_SHELL_WRAPPER = re.compile(rb"#!/bin/sh\n'''exec' .*\n' '''\n")


def rewrite_shebang(script: bytes, python: str = VENV_PYTHON) -> bytes | None:
    """The script with its Python shebang pointing at `python`; None when it has none.

    pip writes "#!<building python>", or for a long path its /bin/sh "'''exec'" wrapper; both
    name the machine that built the image, not the image.
    """
    wrapper = _SHELL_WRAPPER.match(script)
    if wrapper:
        return f"#!{python}\n".encode() + script[wrapper.end() :]
    first, newline, rest = script.partition(b"\n")
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    return f"#!{python}".encode() + newline + rest


# -- installed distributions ------------------------------------------------------------------


def canonical_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class InstalledDist:
    """A distribution pip installed into a --target directory."""

    name: str  # canonical
    version: str
    dist_info: str  # "<name>-<version>.dist-info", relative to the target directory
    files: tuple[str, ...]  # RECORD paths, as written

    @property
    def record(self) -> str:
        return f"{self.dist_info}/RECORD"


def parse_metadata_name_version(metadata: str) -> tuple[str, str]:
    name = version = ""
    for line in metadata.splitlines():
        if not line.strip():
            break  # headers end at the first blank line
        key, _, value = line.partition(":")
        if key == "Name":
            name = value.strip()
        elif key == "Version":
            version = value.strip()
    if not name or not version:
        raise ImageBuildError("a METADATA file has no Name or Version")
    return canonical_name(name), version


def record_paths(record: str) -> tuple[str, ...]:
    return tuple(row[0] for row in csv.reader(io.StringIO(record)) if row)


def target_path(record_path: str) -> str:
    """Where a RECORD path sits in the --target directory (relative to it)."""
    home_relative = posixpath.normpath(posixpath.join(_TARGET_LIB, record_path))
    if home_relative.startswith("../") or posixpath.isabs(home_relative):
        raise ImageBuildError(f"RECORD path {record_path!r} leaves the install directory")
    if home_relative.startswith(_TARGET_LIB + "/"):
        return home_relative.removeprefix(_TARGET_LIB + "/")
    return home_relative


def image_path(record_path: str, target: TargetPython) -> str:
    """Where a RECORD path goes in the image: site-packages, or the venv's bin/, share/..."""
    home_relative = posixpath.normpath(posixpath.join(_TARGET_LIB, record_path))
    if home_relative.startswith(_TARGET_LIB + "/"):
        return f"{target.site_packages}/{home_relative.removeprefix(_TARGET_LIB + '/')}"
    target_path(record_path)  # refuses paths outside the install
    return f"{VENV}/{home_relative}"


def split_dists(
    dists: Iterable[InstalledDist], provided: Mapping[str, str]
) -> tuple[list[InstalledDist], list[InstalledDist]]:
    """(kept, dropped): dists already `provided` (name -> version) by a layer below are
    dropped; the same name at another version is an error, since one would shadow the other."""
    kept: list[InstalledDist] = []
    dropped: list[InstalledDist] = []
    for dist in sorted(dists, key=lambda d: d.name):
        version = provided.get(dist.name)
        if version is None:
            kept.append(dist)
        elif version == dist.version:
            dropped.append(dist)
        else:
            raise ImageBuildError(
                f"{dist.name} resolved to {dist.version} here but to {version} in the layer "
                "below; pin it in constraints.txt so that both agree"
            )
    return kept, dropped


def placements(dists: Sequence[InstalledDist], target: TargetPython) -> dict[str, str]:
    """--target relative path -> image path, for every file of `dists`, each once.

    Two distributions may record the same file (mlflow and mlflow-skinny both install
    bin/mlflow): pip left one file there, the last one installed, and it is placed once.
    """
    return {
        target_path(record_path): image_path(record_path, target)
        for dist in dists
        for record_path in dist.files
    }


def target_files(dists: Iterable[InstalledDist]) -> set[str]:
    """Every --target relative path `dists` recorded."""
    return {target_path(record_path) for dist in dists for record_path in dist.files}


def record_hash(content: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def rewrite_record(record: str, changes: Mapping[str, bytes | None]) -> str:
    """RECORD with the rows of `changes` (RECORD path -> new content, None: removed) updated,
    so that it stays true to the files the image holds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in csv.reader(io.StringIO(record)):
        if not row:
            continue
        path = row[0]
        if path not in changes:
            writer.writerow(row)
        elif (content := changes[path]) is not None:
            writer.writerow([path, record_hash(content), str(len(content))])
    return out.getvalue()
