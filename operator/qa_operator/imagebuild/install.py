"""Installing into a staging tree laid out as the image: pip `--target` for the target's tags,
files moved to where a venv at /opt/venv keeps them, scripts pointed at the venv's python, and
.pyc files compiled for the image's paths. Everything here runs on the building machine."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from qa_operator.imagebuild.errors import ImageBuildError
from qa_operator.imagebuild.target import VENV, TargetPython
from qa_operator.imagebuild.venvlayout import (
    DIRECT_URL,
    InstalledDist,
    image_path,
    parse_metadata_name_version,
    placements,
    record_paths,
    rewrite_record,
    rewrite_shebang,
    target_files,
)

log = logging.getLogger(__name__)

_OUTPUT_TAIL = 4000
# Run in a fresh interpreter so that PYTHONHASHSEED=0 holds: the marshalled order of frozensets
# (and thus the .pyc bytes) depends on string hashing.
_COMPILE_SCRIPT = """
import compileall, py_compile, sys
ok = compileall.compile_dir(
    sys.argv[1],
    ddir=sys.argv[2],
    quiet=1,
    workers=0,
    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
)
sys.exit(0 if ok else 3)
"""


def pip_version() -> str:
    return importlib.metadata.version("pip")


def building_python() -> str:
    return ".".join(str(part) for part in sys.version_info[:3])


def can_compile_for(target: TargetPython) -> bool:
    """.pyc files are only valid for the minor version that wrote them."""
    return f"{sys.version_info.major}.{sys.version_info.minor}" == target.version


def pip_install(target_dir: Path, arguments: Sequence[str]) -> None:
    """`pip install --target target_dir --no-compile ARGUMENTS` with the building Python's pip
    (its configuration, index and cache apply)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--target",
        str(target_dir),
        "--no-compile",
        "--no-input",
        "--disable-pip-version-check",
        "--progress-bar",
        "off",
        *arguments,
    ]
    log.info("pip install %s", " ".join(arguments))
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr)[-_OUTPUT_TAIL:]
        raise ImageBuildError(f"pip install {' '.join(arguments)} failed:\n{output}")


def installed_dists(target_dir: Path) -> list[InstalledDist]:
    dists = []
    for dist_info in sorted(target_dir.glob("*.dist-info")):
        name, version = parse_metadata_name_version((dist_info / "METADATA").read_text())
        files = record_paths((dist_info / "RECORD").read_text())
        dists.append(InstalledDist(name, version, dist_info.name, files))
    return dists


def stage_dists(
    target_dir: Path, dists: Sequence[InstalledDist], stage: Path, target: TargetPython
) -> None:
    """Move the files of `dists` from pip's --target layout into `stage` (the image's root):
    packages under site-packages, scripts under the venv's bin/ with their shebang rewritten,
    data files under the venv; drop direct_url.json; keep each RECORD true to the result."""
    for source, destination in sorted(placements(dists, target).items()):
        origin = target_dir / source
        if not origin.exists() and not origin.is_symlink():
            raise ImageBuildError(f"pip recorded {source} but did not install it")
        (stage / destination).parent.mkdir(parents=True, exist_ok=True)
        os.replace(origin, stage / destination)
    scripts = f"{VENV}/bin/"
    for dist in dists:
        changes: dict[str, bytes | None] = {}
        for record_path in dist.files:
            path = stage / image_path(record_path, target)
            if record_path == f"{dist.dist_info}/{DIRECT_URL}":
                path.unlink()
                changes[record_path] = None
            elif image_path(record_path, target).startswith(scripts) and path.is_file():
                rewritten = rewrite_shebang(path.read_bytes())
                if rewritten is not None:
                    path.write_bytes(rewritten)
                    changes[record_path] = rewritten
        if changes:
            record = stage / image_path(dist.record, target)
            record.write_text(rewrite_record(record.read_text(), changes))


def leftovers(target_dir: Path, dropped: Sequence[InstalledDist]) -> list[str]:
    """Files pip left in target_dir that no kept distribution recorded (dropped ones aside)."""
    expected = target_files(dropped)
    found = []
    for dirpath, _dirnames, filenames in os.walk(target_dir):
        for name in filenames:
            relative = (Path(dirpath) / name).relative_to(target_dir).as_posix()
            if relative not in expected and "__pycache__" not in relative:
                found.append(relative)
    return sorted(found)


def compile_pycs(directory: Path, image_directory: str, target: TargetPython) -> bool:
    """Write unchecked-hash .pyc files next to every .py under `directory`, naming
    `image_directory` (the in-image path) as their source. False when skipped."""
    if not can_compile_for(target):
        log.warning(
            "not compiling .pyc files: this Python is %s, the image's is %s "
            "(the container will compile them at import time)",
            building_python(),
            target.version,
        )
        return False
    if not directory.is_dir():
        return False
    environment = {**os.environ, "PYTHONHASHSEED": "0"}
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    result = subprocess.run(
        [sys.executable, "-c", _COMPILE_SCRIPT, str(directory), "/" + image_directory],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if result.returncode == 3:
        failures = [line for line in result.stdout.splitlines() if line.startswith("***")]
        log.warning(
            "%d files under %s do not compile (kept as source only): %s",
            len(failures),
            image_directory,
            "; ".join(failures[:5]),
        )
    elif result.returncode != 0:
        output = (result.stdout + result.stderr)[-_OUTPUT_TAIL:]
        raise ImageBuildError(f"compiling .pyc files under {directory} failed:\n{output}")
    return True
